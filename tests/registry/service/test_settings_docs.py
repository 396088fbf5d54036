"""docs/settings.md lists every registry setting (with its ``ZKID_*`` variable), every key
of the relay's ``--config`` file and every ``ZKID_*`` variable the code reads; and the
message length limit is stated right."""

from __future__ import annotations

import re
from pathlib import Path

from registry.relay.config import RelayConfig
from registry.service.settings import Settings
from zk.hashing import MAX_TEXT_BYTES

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


def test_every_registry_setting_and_its_variable_is_documented() -> None:
    section = _section("The registry")
    missing = [
        name for name in Settings.model_fields if f"| `{name}` | `ZKID_{name.upper()}` |" not in section
    ]
    assert not missing, f"registry settings missing from docs/settings.md: {missing}"


def test_every_relay_config_key_is_documented() -> None:
    section = _section("The relay")
    missing = [name for name in RelayConfig.model_fields if f"| `{name}` |" not in section]
    assert not missing, f"relay --config keys missing from docs/settings.md: {missing}"


def test_every_zkid_variable_in_the_code_is_documented() -> None:
    used: set[str] = set()
    for package in ("registry", "zk"):
        for path in (ROOT / package).rglob("*.py"):
            used.update(re.findall(r"(?<![A-Z_])ZKID_[A-Z][A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    assert "ZKID_PASSPHRASE" in used and "ZKID_RELAY_PASSWORD" in used  # the scan finds them
    missing = sorted(v for v in used if f"`{v}`" not in DOC)
    assert not missing, f"ZKID_* variables missing from docs/settings.md: {missing}"


def test_the_message_limit_is_31_bytes_everywhere() -> None:
    assert MAX_TEXT_BYTES == 31 and "at most **31** UTF-8 bytes" in DOC
    wrong = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "registry" / "cli").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?i)(?:message|text)[^.\n]{0,60}?\b32 (?:UTF-8 )?bytes|\b32 UTF-8 bytes", text):
            wrong.append(f"{path.name}: {match.group(0)}")
    assert not wrong, wrong
