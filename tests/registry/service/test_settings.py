"""Settings precedence: flags over ZKID_* environment over the TOML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.service.settings import load_settings


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


@pytest.mark.parametrize("epoch_length, skew", [(600, 300), (600, 301), (10, 5), (1, 1)])
def test_clock_skew_must_be_less_than_half_an_epoch(epoch_length: int, skew: int) -> None:
    with pytest.raises(ValidationError, match="less than epoch_length / 2"):
        load_settings(epoch_length=epoch_length, clock_skew=skew)
    assert load_settings(epoch_length=epoch_length, clock_skew=(epoch_length - 1) // 2).clock_skew == (epoch_length - 1) // 2


def test_index_freshness_bound_must_exceed_the_poll() -> None:
    assert load_settings().index_max_age == 30.0 and load_settings().index_max_lag == 10
    with pytest.raises(ValidationError, match="index_max_age"):
        load_settings(poll_interval=5.0, index_max_age=10.0)
