"""Passphrase-encrypted identity at rest (the CLI's identity file), as pure functions on bytes.

Format (UTF-8 JSON object, version 1)::

    {"format": "letro-zkid-identity", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
     "cipher": {"name": "aes-256-gcm", "nonce": "<base64, 12 bytes>"},
     "commitment": "<decimal>",
     "ciphertext": "<base64: the private key bytes, encrypted, with the 16-byte tag>"}

Key: scrypt (RFC 7914) of the NFC-normalised passphrase, 32 bytes. Cipher: AES-256-GCM
(NIST SP 800-38D) over the private key bytes; the associated data is the canonical JSON
of every field but ``ciphertext``, so the parameters and the public commitment cannot be
changed without detection. After decryption the commitment is recomputed and compared.
A reader refuses scrypt parameters outside the bounds of :func:`scrypt_parameters_accepted`
(at most 256 MiB and 4 passes) before deriving anything: the parameters are read before the
tag can be checked, so they must not be able to exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import unicodedata
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from zk import strict_json
from zk.field import parse_decimal
from zk.identity import Identity

__all__ = [
    "FORMAT",
    "VERSION",
    "MAX_SCRYPT_MEMORY",
    "MAX_SCRYPT_P",
    "MIN_SCRYPT_N",
    "IdentityFileError",
    "WrongPassphraseError",
    "decrypt_identity",
    "encrypt_identity",
    "scrypt_parameters_accepted",
]

FORMAT = "letro-zkid-identity"
VERSION = 1
#: scrypt cost used for new files: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s).
DEFAULT_SCRYPT_N = 1 << 15
_SCRYPT_R = 8
_SCRYPT_P = 1
#: Bounds on the scrypt parameters of a file (docs/cli.md, "Identity files"), checked
#: before any key derivation: n a power of two, at least 2^14 (weaker files are refused);
#: scrypt's memory 128 * n * r at most 256 MiB (the cost of an Ethereum keystore,
#: n = 2^18, r = 8); p at most 4 (p passes over that memory). So a crafted file costs at
#: most 256 MiB and 4 passes before its authentication tag is checked.
MIN_SCRYPT_N = 1 << 14
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
MAX_SCRYPT_P = 4
_SALT_BYTES = 16
_NONCE_BYTES = 12
_MAX_BLOB = 1 << 20


class IdentityFileError(ValueError):
    """The identity file is malformed or unsupported."""


class WrongPassphraseError(IdentityFileError):
    """Authentication failed: wrong passphrase, or the file was altered."""


def _passphrase_bytes(passphrase: str) -> bytes:
    if not isinstance(passphrase, str):
        raise ValueError("passphrase must be a string")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("passphrase is not valid Unicode") from exc


def scrypt_parameters_accepted(n: int, r: int, p: int) -> bool:
    """Whether scrypt (RFC 7914) with these parameters stays within the bounds above; a
    reader checks this before deriving anything, so a file cannot make it allocate more."""
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (n, r, p)):
        return False
    if n < MIN_SCRYPT_N or n & (n - 1) or r < 1 or not 1 <= p <= MAX_SCRYPT_P:
        return False
    return 128 * n * r <= MAX_SCRYPT_MEMORY


def _derive_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(_passphrase_bytes(passphrase))


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encrypt_identity(identity: Identity, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """Encrypt ``identity``'s private key under ``passphrase``; returns the file contents."""
    if not isinstance(identity, Identity):
        raise ValueError("identity must be an Identity")
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("passphrase must be a non-empty string")
    if not scrypt_parameters_accepted(scrypt_n, _SCRYPT_R, _SCRYPT_P):
        raise ValueError(f"scrypt_n must be a power of two in [{MIN_SCRYPT_N}, {MAX_SCRYPT_MEMORY // (128 * _SCRYPT_R)}]")
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(_NONCE_BYTES)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": _b64(salt)},
        "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce)},
        "commitment": str(identity.commitment),
    }
    key = _derive_key(passphrase, salt, scrypt_n, _SCRYPT_R, _SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, identity.private_key, _aad(header))
    document = dict(header, ciphertext=_b64(ciphertext))
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    if type(value) is not kind:
        raise IdentityFileError(f"identity file: '{name}' is missing or not a {kind.__name__}")
    return value


def _unb64(text: str, name: str, length: int | None = None) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IdentityFileError(f"identity file: '{name}' is not base64") from exc
    if length is not None and len(data) != length:
        raise IdentityFileError(f"identity file: '{name}' must be {length} bytes")
    return data


def decrypt_identity(blob: bytes, passphrase: str) -> Identity:
    """Decrypt a file made by :func:`encrypt_identity`.

    Raises :class:`WrongPassphraseError` if the passphrase is wrong (or the file altered),
    :class:`IdentityFileError` if the file is malformed or of an unsupported version.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise IdentityFileError("identity file contents must be bytes")
    if len(blob) > _MAX_BLOB:
        raise IdentityFileError("identity file is too large")
    try:
        document = strict_json.loads(bytes(blob))
    except strict_json.JsonInputError as exc:
        raise IdentityFileError(f"identity file is not acceptable JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise IdentityFileError("not a letro-zkid identity file")
    version = document.get("version")
    if version != VERSION or type(version) is not int:
        raise IdentityFileError(f"unsupported identity file version: {version!r}")

    kdf = _field(document, "kdf", dict)
    cipher = _field(document, "cipher", dict)
    if kdf.get("name") != "scrypt" or cipher.get("name") != "aes-256-gcm":
        raise IdentityFileError("identity file: unsupported kdf or cipher")
    n, r, p = _field(kdf, "n", int), _field(kdf, "r", int), _field(kdf, "p", int)
    if not scrypt_parameters_accepted(n, r, p):
        raise IdentityFileError(
            "identity file: scrypt parameters out of the accepted range"
            f" (n a power of two >= 2^14, 128*n*r <= 256 MiB, p <= {MAX_SCRYPT_P})"
        )
    salt = _unb64(_field(kdf, "salt", str), "salt", _SALT_BYTES)
    nonce = _unb64(_field(cipher, "nonce", str), "nonce", _NONCE_BYTES)
    commitment_text = _field(document, "commitment", str)
    try:
        commitment = parse_decimal(commitment_text, "commitment")
    except ValueError as exc:
        raise IdentityFileError("identity file: bad commitment") from exc
    ciphertext = _unb64(_field(document, "ciphertext", str), "ciphertext")
    if set(document) != {"format", "version", "kdf", "cipher", "commitment", "ciphertext"}:
        raise IdentityFileError("identity file: unexpected fields")

    header = {k: v for k, v in document.items() if k != "ciphertext"}
    key = _derive_key(passphrase, salt, n, r, p)
    try:
        private_key = AESGCM(key).decrypt(nonce, ciphertext, _aad(header))
    except InvalidTag:
        raise WrongPassphraseError("wrong passphrase (or the identity file was altered)") from None
    identity = Identity(private_key)
    if identity.commitment != commitment:  # authenticated, so only a buggy writer gets here
        raise IdentityFileError("identity file: commitment does not match the decrypted key")
    return identity
