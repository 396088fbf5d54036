"""The offline ``zkid identity|group|proof`` commands, run as real subprocesses."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.jsbridge import run_js
from tests.support.cli import run_zkid
from zk.identity import Identity
from zk.tree import LeanIMT

ENV = {**os.environ, "ZKID_PASSPHRASE": "correct horse battery staple"}


def zkid(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, preexec_fn: Callable[[], Any] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_zkid(*args, env=env or ENV, stdin=stdin, preexec_fn=preexec_fn)


def test_identity_create_json_matches_library(tmp_path: Path) -> None:
    out = zkid("identity", "create", "--private-key", "alice", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    expected = Identity("alice")
    assert info["commitment"] == str(expected.commitment)
    assert info["public_key"] == [str(v) for v in expected.public_key]
    assert "secret_scalar" not in info  # only with --show-secret


def test_identity_file_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    created = zkid("identity", "create", "--out", str(path), "--json")
    assert created.returncode == 0, created.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    shown = zkid("identity", "show", str(path), "--json")
    assert json.loads(shown.stdout)["commitment"] == json.loads(created.stdout)["commitment"]
    wrong = zkid("identity", "show", str(path), env={**ENV, "ZKID_PASSPHRASE": "nope"})
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("zkid: error:") and len(wrong.stderr.strip().splitlines()) == 1
    again = zkid("identity", "create", "--out", str(path))
    assert again.returncode == 2  # never overwrite an identity


def test_group_root_and_proof(tmp_path: Path) -> None:
    leaves = [Identity(f"m{i}").commitment for i in range(5)]
    path = tmp_path / "group.txt"
    path.write_text("\n".join(str(v) for v in leaves) + "\n")
    tree = LeanIMT(leaves=leaves)
    root = zkid("group", "root", str(path), "--json")
    assert json.loads(root.stdout) == {"root": str(tree.root), "depth": tree.depth, "size": 5}
    proof = zkid("group", "proof", str(path), str(leaves[3]))
    assert json.loads(proof.stdout) == tree.generate_proof(3).to_dict()
    outsider = zkid("group", "proof", str(path), "12345")
    assert outsider.returncode == 1
    path.write_text("1\n0x2\n")
    bad = zkid("group", "root", str(path))
    assert bad.returncode == 2 and "line 2" in bad.stderr


def test_proof_generate_then_verify_here_and_in_js(tmp_path: Path) -> None:
    ident = tmp_path / "id.json"
    info = json.loads(zkid("identity", "create", "--out", str(ident), "--json").stdout)
    group = tmp_path / "group.txt"
    group.write_text("\n".join([str(Identity("x").commitment), info["commitment"], str(Identity("y").commitment)]) + "\n")
    proof_file = tmp_path / "proof.json"
    gen = zkid("proof", "generate", "--identity", str(ident), "--group", str(group),
               "--message", "hello", "--scope", "room-1", "--out", str(proof_file))
    assert gen.returncode == 0, gen.stderr
    ok = zkid("proof", "verify", str(proof_file), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"valid": True, "reason": None}
    proof = json.loads(proof_file.read_text())
    assert run_js("proof_verify.mjs", {"semaphore": [proof]})["semaphore"] == [True]

    tampered = dict(proof, nullifier=str(int(proof["nullifier"]) + 1))
    proof_file.write_text(json.dumps(tampered))
    bad = zkid("proof", "verify", str(proof_file), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["valid"] is False

    proof_file.write_text(json.dumps(dict(proof, nullifier="0" + proof["nullifier"])))
    assert zkid("proof", "verify", str(proof_file)).returncode == 2
    proof_file.write_text("{not json")
    assert zkid("proof", "verify", str(proof_file)).returncode == 2


DEEP = 100_000


@pytest.mark.parametrize(
    "command",
    [
        ["proof", "verify"],
        ["evidence", "verify"],
        ["group", "root"],
        ["identity", "show"],
    ],
)
@pytest.mark.parametrize(
    "content",
    ["[" * DEEP, "[" * DEEP + "]" * DEEP, '{"a":' * DEEP, '{"a": 1, "a": 2}', "[" + "9" * 5000 + "]"],
    ids=["open", "closed", "objects", "duplicate-key", "huge-int"],
)
def test_hostile_json_files_are_one_error_line(tmp_path: Path, command: list[str], content: str) -> None:
    """Deep nesting (which overflowed the C stack: SIGSEGV), duplicate keys and huge
    integers: exit 2 with one line, never a crash or a traceback."""
    path = tmp_path / "hostile.json"
    path.write_text(content)
    out = zkid(*command, str(path))
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:"), out.stderr[-500:]


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zkid: error:"), out.stderr[-500:]
    return lines[0]


def _limited(memory: int | None = None, file_size: int | None = None, umask: int | None = None) -> Any:
    """A ``preexec_fn`` setting real resource limits (and the umask) in the child."""

    def apply() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        if umask is not None:
            os.umask(umask)

    return apply


def test_identity_file_with_costly_scrypt_parameters_is_refused_before_any_work(tmp_path: Path) -> None:
    """scrypt n = 2^20, r = 32, p = 16 needs 4 GiB and 16 passes: refused from the header,
    with one line. The child may use at most 1 GiB, so a reader that ran the KDF would die
    with MemoryError (a traceback) instead of exhausting the machine."""
    from zk.identity_file import encrypt_identity

    document = json.loads(encrypt_identity(Identity("costly"), ENV["ZKID_PASSPHRASE"], scrypt_n=1 << 14))
    document["kdf"].update(n=1 << 20, r=32, p=16)
    path = tmp_path / "costly.json"
    path.write_text(json.dumps(document))
    group = tmp_path / "group.txt"
    group.write_text(f"{document['commitment']}\n")
    generate = ["proof", "generate", "--identity", str(path), "--group", str(group), "--message", "1", "--scope", "2"]
    for command in (["identity", "show", str(path)], generate):
        out = zkid(*command, preexec_fn=_limited(memory=1 << 30))
        assert "scrypt parameters out of the accepted range" in _one_error_line(out)


def test_identity_create_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "stolen.json"
    target.parent.mkdir()
    link = tmp_path / "id.json"
    link.symlink_to(target)  # dangling: the target does not exist yet
    out = zkid("identity", "create", "--out", str(link))
    assert "refusing to overwrite" in _one_error_line(out)
    assert not target.exists() and link.is_symlink()  # nothing written through the link

    target.write_text("precious\n")  # a link to an existing file: untouched as well
    assert "refusing to overwrite" in _one_error_line(zkid("identity", "create", "--out", str(link)))
    assert target.read_text() == "precious\n"

    existing = tmp_path / "existing.json"  # O_EXCL: an existing file is never overwritten
    existing.write_text("keep me\n")
    assert "refusing to overwrite" in _one_error_line(zkid("identity", "create", "--out", str(existing)))
    assert existing.read_text() == "keep me\n"


def test_identity_file_is_private_from_its_creation(tmp_path: Path) -> None:
    """Mode 0600 at creation, whatever the umask. With umask 0 and a file-size limit
    smaller than the file, a writer that creates the file open and narrows it afterwards
    would leave a world-readable partial file behind; the creation with O_CREAT|O_EXCL and
    mode 0600 leaves nothing (the partial file is removed) and says why in one line."""
    path = tmp_path / "sub" / "id.json"
    out = zkid("identity", "create", "--out", str(path), "--json", preexec_fn=_limited(umask=0))
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    cut = tmp_path / "cut.json"
    out = zkid("identity", "create", "--out", str(cut), preexec_fn=_limited(file_size=64, umask=0))
    assert "cannot write" in _one_error_line(out)
    assert not cut.exists()
