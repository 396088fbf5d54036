"""Encrypted identity file: round trip, wrong passphrase, tampering and malformed input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from zk.identity import Identity
import zk.identity_file
from zk.identity_file import (
    FORMAT,
    IdentityFileError,
    WrongPassphraseError,
    decrypt_identity,
    encrypt_identity,
    scrypt_parameters_accepted,
)

FAST_N = 1 << 14  # the minimum accepted cost, to keep the tests quick


@pytest.fixture(scope="module")
def identity() -> Identity:
    return Identity(b"\x07" * 32)


@pytest.fixture(scope="module")
def blob(identity: Identity) -> bytes:
    return encrypt_identity(identity, "correct horse", scrypt_n=FAST_N)


def _edit(blob: bytes, change: Any) -> bytes:
    document = json.loads(blob)
    change(document)
    return json.dumps(document).encode()


def test_round_trip(identity: Identity, blob: bytes) -> None:
    restored = decrypt_identity(blob, "correct horse")
    assert restored == identity and restored.commitment == identity.commitment
    document = json.loads(blob)
    assert document["format"] == FORMAT and document["version"] == 1
    assert document["commitment"] == str(identity.commitment)
    # The private key does not appear in clear.
    assert identity.private_key.hex() not in blob.decode()
    assert identity.export() not in blob.decode()


def test_default_cost_and_text_key() -> None:
    identity = Identity("clé secrète")
    blob = encrypt_identity(identity, "pässword")
    assert json.loads(blob)["kdf"]["n"] == 1 << 15
    assert decrypt_identity(blob, "pässword") == identity
    # The passphrase is NFC-normalised: the decomposed spelling opens the same file.
    assert decrypt_identity(blob, "pa\u0308ssword") == identity


def test_fresh_salt_and_nonce(identity: Identity, blob: bytes) -> None:
    other = encrypt_identity(identity, "correct horse", scrypt_n=FAST_N)
    assert json.loads(other)["kdf"]["salt"] != json.loads(blob)["kdf"]["salt"]
    assert json.loads(other)["ciphertext"] != json.loads(blob)["ciphertext"]


def test_wrong_passphrase(blob: bytes) -> None:
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        decrypt_identity(blob, "Correct horse")
    with pytest.raises(WrongPassphraseError):
        decrypt_identity(blob, "")


def _flip_ciphertext(d: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(d["ciphertext"]))
    raw[0] ^= 1
    d["ciphertext"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "change",
    [
        _flip_ciphertext,
        lambda d: d.update(commitment=str(int(d["commitment"]) ^ 1)),
        lambda d: d["kdf"].update(r=4),
        lambda d: d["cipher"].update(nonce=base64.b64encode(b"\x00" * 12).decode()),
    ],
)
def test_tampering_is_detected(blob: bytes, change: Any) -> None:
    with pytest.raises(WrongPassphraseError):
        decrypt_identity(_edit(blob, change), "correct horse")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(version=2),
        lambda d: d.update(version="1"),
        lambda d: d.update(format="other"),
        lambda d: d["kdf"].update(name="pbkdf2"),
        lambda d: d["cipher"].update(name="aes-128-gcm"),
        lambda d: d["kdf"].update(n=1 << 10),  # too weak
        lambda d: d["kdf"].update(n=1 << 30),  # would allocate too much
        lambda d: d["kdf"].update(n=(1 << 15) + 1),
        lambda d: d["kdf"].update(p=0),
        lambda d: d["kdf"].update(salt="!!"),
        lambda d: d["kdf"].update(salt=base64.b64encode(b"short").decode()),
        lambda d: d["cipher"].update(nonce=None),
        lambda d: d.update(commitment="0123"),
        lambda d: d.update(commitment=12),
        lambda d: d.pop("ciphertext"),
        lambda d: d.update(extra=1),
    ],
)
def test_malformed_files(blob: bytes, change: Any) -> None:
    with pytest.raises(IdentityFileError):
        decrypt_identity(_edit(blob, change), "correct horse")


@pytest.mark.parametrize("bad", [b"", b"not json", b"[]", b"\xff\xfe", b"{}", "text"])
def test_not_an_identity_file(bad: Any) -> None:
    with pytest.raises(IdentityFileError):
        decrypt_identity(bad, "x")


def test_encrypt_rejects_bad_arguments(identity: Identity) -> None:
    with pytest.raises(ValueError):
        encrypt_identity(identity, "")
    with pytest.raises(ValueError):
        encrypt_identity("not an identity", "pw")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encrypt_identity(identity, "pw", scrypt_n=1000)


@pytest.mark.parametrize(
    "n, r, p",
    [
        (1 << 20, 32, 16),  # 4 GiB and 16 lanes: what the reader used to accept
        (1 << 20, 8, 1),  # 1 GiB
        (1 << 19, 8, 1),  # 512 MiB: just over the memory bound
        (1 << 18, 8, 5),  # within the memory bound, too many passes
        (1 << 14, 1 << 20, 1),  # r carries the memory
    ],
)
def test_costly_scrypt_parameters_are_refused_before_any_work(
    blob: bytes, n: int, r: int, p: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kdf(*_args: Any) -> bytes:
        raise AssertionError("the KDF ran on parameters that should have been refused")

    monkeypatch.setattr(zk.identity_file, "_derive_key", no_kdf)  # a regression must not allocate gigabytes
    crafted = _edit(blob, lambda d: d["kdf"].update(n=n, r=r, p=p))
    with pytest.raises(IdentityFileError, match="scrypt parameters out of the accepted range"):
        decrypt_identity(crafted, "correct horse")


def test_scrypt_bounds() -> None:
    assert scrypt_parameters_accepted(1 << 14, 8, 1)  # the weakest accepted
    assert scrypt_parameters_accepted(1 << 18, 8, 4)  # an Ethereum keystore's cost, 4 passes: the most
    assert scrypt_parameters_accepted(1 << 21, 1, 1)  # 256 MiB with r = 1
    assert not scrypt_parameters_accepted(1 << 13, 8, 1)  # too weak
    assert not scrypt_parameters_accepted(1 << 18, 9, 1)  # 288 MiB
    assert not scrypt_parameters_accepted(1 << 18, 8, 5)
    assert not scrypt_parameters_accepted((1 << 15) + 1, 8, 1)
    assert not scrypt_parameters_accepted(1 << 15, 0, 1)
    assert not scrypt_parameters_accepted(1 << 15, 8, 0)
    assert not scrypt_parameters_accepted(True, 8, 1)  # type: ignore[arg-type]
    encrypt_identity(Identity(b"\x01" * 32), "pw", scrypt_n=1 << 14)
    with pytest.raises(ValueError):
        encrypt_identity(Identity(b"\x01" * 32), "pw", scrypt_n=1 << 19)  # would write an unreadable file


def test_errors_are_value_errors() -> None:
    assert issubclass(WrongPassphraseError, IdentityFileError)
    assert issubclass(IdentityFileError, ValueError)
