"""zk.artifacts: locating and pinning the Semaphore ceremony artifacts."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from zk import artifacts
from zk.artifacts import PINNED_SHA256, ArtifactError, artifacts_dir, load_artifacts

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = ROOT / "node_modules" / "@zk-kit" / "semaphore-artifacts"


def copy_depth(depth: int, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for suffix in (".wasm", ".zkey", ".json"):
        shutil.copyfile(INSTALLED / f"semaphore-{depth}{suffix}", target / f"semaphore-{depth}{suffix}")
    return target


def test_installed_package_is_the_pinned_version() -> None:
    meta = json.loads((INSTALLED / "package.json").read_text())
    assert meta["name"] == artifacts.PACKAGE
    assert meta["version"] == artifacts.VERSION == "4.13.0"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@zk-kit/semaphore-artifacts"]["version"] == "4.13.0"


def test_pin_table_covers_every_depth_and_file() -> None:
    assert sorted(PINNED_SHA256) == list(range(1, 33))
    digests = [d for pins in PINNED_SHA256.values() for d in pins]
    assert len(digests) == 96 and len(set(digests)) == 96
    assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in digests)


def test_every_installed_artifact_matches_its_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.ENV_VAR, raising=False)
    for depth in range(1, 33):
        found = load_artifacts(depth)
        assert found.depth == depth
        assert found.wasm == INSTALLED.resolve() / f"semaphore-{depth}.wasm"
        assert found.zkey.name == f"semaphore-{depth}.zkey" and found.vkey.name == f"semaphore-{depth}.json"
        # An independent hash of the files, not the module's own helper.
        assert hashlib.sha256(found.zkey.read_bytes()).hexdigest() == PINNED_SHA256[depth].zkey
    assert load_artifacts(20) is load_artifacts(20)  # verification is cached


def test_read_returns_the_verified_bytes() -> None:
    found = load_artifacts(3)
    data = found.read("vkey")
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256[3].vkey
    assert json.loads(data)["nPublic"] == 4


@pytest.mark.parametrize("depth", [0, 33, -1, 1000])
def test_depth_out_of_range(depth: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 32"):
        load_artifacts(depth)


@pytest.mark.parametrize("depth", [True, 1.0, "1", None])
def test_depth_must_be_an_int(depth: object) -> None:
    with pytest.raises(ValueError, match="integer"):
        load_artifacts(depth)  # type: ignore[arg-type]


def test_default_directory_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(artifacts.ENV_VAR, raising=False)
    assert artifacts_dir().resolve() == INSTALLED.resolve()
    assert artifacts_dir(tmp_path) == tmp_path
    copy_depth(1, tmp_path / "env")
    monkeypatch.setenv(artifacts.ENV_VAR, str(tmp_path / "env"))
    assert artifacts_dir() == tmp_path / "env"
    assert load_artifacts(1).zkey == (tmp_path / "env").resolve() / "semaphore-1.zkey"


def test_missing_artifacts_tell_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"make setup.*npm ci") as info:
        load_artifacts(1, tmp_path)
    assert "not found" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("suffix", [".wasm", ".zkey", ".json"])
def test_altered_artifact_is_refused(tmp_path: Path, suffix: str) -> None:
    copy_depth(1, tmp_path)
    path = tmp_path / f"semaphore-1{suffix}"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256") as info:
        load_artifacts(1, tmp_path)
    message = str(info.value)
    assert "expected" in message and "not found" not in message
    assert getattr(PINNED_SHA256[1], {".wasm": "wasm", ".zkey": "zkey", ".json": "vkey"}[suffix]) in message


def test_swap_after_check_is_caught_on_read(tmp_path: Path) -> None:
    copy_depth(2, tmp_path)
    found = load_artifacts(2, tmp_path)
    # Another depth's (genuine) key put in place after the first check.
    shutil.copyfile(INSTALLED / "semaphore-3.zkey", tmp_path / "semaphore-2.zkey")
    with pytest.raises(ArtifactError, match="SHA-256"):
        found.read("zkey")
    assert found.read("wasm") == (INSTALLED / "semaphore-2.wasm").read_bytes()
