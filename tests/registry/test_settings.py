"""Settings precedence: flags over ZKID_* environment over the TOML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.settings import load_settings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZKID_BATCH_SIZE", raising=False)
    config = tmp_path / "zkid.toml"
    config.write_text('region = "us-east"\nbatch_size = 7\n')
    assert load_settings().batch_size == 500
    assert (load_settings(config).region, load_settings(config).batch_size) == ("us-east", 7)
    monkeypatch.setenv("ZKID_BATCH_SIZE", "9")
    assert load_settings(config).batch_size == 9
    assert load_settings(config, batch_size=3, region=None).batch_size == 3  # None = flag not given
    assert load_settings(config, region=None).region == "us-east"


@pytest.mark.parametrize("text", ["bogus = 1\n", 'region = "Not A Tag"\n', "access_log_hours = 100\n"])
def test_bad_config_is_rejected(tmp_path: Path, text: str) -> None:
    config = tmp_path / "zkid.toml"
    config.write_text(text)
    with pytest.raises(ValidationError):
        load_settings(config)
