"""C2SP signed notes with Ed25519 keys, and C2SP tlog checkpoints.

Specifications:

- https://c2sp.org/signed-note (v1.0.0): a note is a text ending in a newline, a blank
  line, then signature lines ``"— <key name> base64(key ID || signature)\\n"`` (em dash
  U+2014). Ed25519 (signature type 0x01) signs the text, final newline included. The
  key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``, big-endian.
- Verifier keys ``<name>+<hex key ID>+base64(0x01 || public key)`` and signer keys
  ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || 32-byte seed)``, as produced and
  parsed by Go's golang.org/x/mod/sumdb/note (``NewVerifier``, ``NewSigner``,
  ``GenerateKey``).
- https://c2sp.org/tlog-checkpoint: the note text of a checkpoint is the origin line,
  the tree size in canonical decimal, the base64 RFC 6962 root hash, then optional
  non-empty extension lines.

Parsing is strict: valid UTF-8 without control characters other than newline, the
text/signature split at the *last* blank line, canonical base64, at most 100 signature
lines (Go's limit; the spec asks for at least 16). Verification follows the spec:
signatures from unknown keys are ignored, every signature from a known key must
verify, and at least one must.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20

EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "


class NoteError(ValueError):
    """A signed note, a key string or a checkpoint is malformed or does not verify.

    ``reason`` is a short stable code (``"malformed_note"``, ``"bad_key"``,
    ``"invalid_signature"``, ``"no_known_signature"``, ``"malformed_checkpoint"``...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- Encoding helpers ----------------------------------------------------------------


def b64decode_strict(text: str, what: str) -> bytes:
    """RFC 4648 §4 base64 with padding, rejecting any non-canonical spelling."""
    if not isinstance(text, str) or not text.isascii():
        raise NoteError("bad_base64", f"{what} is not base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("bad_base64", f"{what} is not base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError("bad_base64", f"{what} is not canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def parse_canonical_uint(text: str, what: str, limit: int = (1 << 63) - 1) -> int:
    """ASCII decimal without sign, spaces or leading zeros (except ``"0"``), at most ``limit``."""
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise NoteError("bad_number", f"{what} is not a canonical decimal")
    if len(text) > 19 or int(text) > limit:
        raise NoteError("bad_number", f"{what} is too large")
    return int(text)


def is_valid_key_name(name: object) -> bool:
    """signed-note: key names are non-empty and contain no Unicode space and no ``+``.

    Control characters are refused too (a note may not contain them anyway), and so
    are strings that are not valid UTF-8 (lone surrogates).
    """
    if not isinstance(name, str) or not name or "+" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    for ch in name:
        if ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc"):
            return False
    return True


def _check_name(name: object) -> str:
    if not is_valid_key_name(name):
        raise NoteError("bad_key_name", f"invalid key name {name!r}")
    assert isinstance(name, str)
    return name


def key_id(name: str, key_material: bytes) -> int:
    """signed-note: ``SHA-256(name || 0x0A || signature type || public key)[:4]`` as uint32.

    ``key_material`` is the signature type byte followed by the public key.
    """
    digest = hashlib.sha256(_check_name(name).encode("utf-8") + b"\n" + key_material).digest()
    return int.from_bytes(digest[:4], "big")


# --- Keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier key: name, key ID and 32-byte public key."""

    name: str
    key_id: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise NoteError("bad_key", "Ed25519 public key must be 32 bytes")
        if self.key_id != key_id(self.name, bytes([ALG_ED25519]) + self.public_key):
            raise NoteError("bad_key", "key ID does not match the name and public key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> NoteVerifier:
        return cls(name, key_id(name, bytes([ALG_ED25519]) + public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<8 hex digits>+base64(0x01 || public key)``."""
        if not isinstance(vkey, str):
            raise NoteError("bad_key", "verifier key must be a string")
        # Names and IDs cannot contain '+', base64 can: split on the first two only.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise NoteError("bad_key", "verifier key must have three '+'-separated parts")
        name, hex_id, material = parts
        return cls._from_parts(name, hex_id, material)

    @classmethod
    def _from_parts(cls, name: str, hex_id: str, material_b64: str) -> NoteVerifier:
        ident = _parse_key_id(hex_id)
        material = b64decode_strict(material_b64, "key material")
        if len(material) != 33 or material[0] != ALG_ED25519:
            raise NoteError("bad_key", "expected an Ed25519 key (type 0x01, 32 bytes)")
        return cls(_check_name(name), ident, material[1:])

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{b64encode(bytes([ALG_ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """RFC 8032 Ed25519 verification; never raises."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _parse_key_id(hex_id: str) -> int:
    # Go accepts upper-case hex here; the spec's hex is lower-case, which we require.
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise NoteError("bad_key", "key ID must be 8 lower-case hex digits")
    return int(hex_id, 16)


class NoteSigner:
    """An Ed25519 note signer (the log's checkpoint key)."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise NoteError("bad_key", "Ed25519 seed must be 32 bytes")
        self.name = _check_name(name)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = NoteVerifier.from_public_key(name, public)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed)

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<8 hex digits>+base64(0x01 || seed)``; the key ID
        must match the derived public key."""
        if not isinstance(skey, str):
            raise NoteError("bad_key", "signer key must be a string")
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("bad_key", "signer key must look like PRIVATE+KEY+name+id+key")
        name, hex_id, material_b64 = parts[2:]
        ident = _parse_key_id(hex_id)
        material = b64decode_strict(material_b64, "key material")
        if len(material) != 33 or material[0] != ALG_ED25519:
            raise NoteError("bad_key", "expected an Ed25519 seed (type 0x01, 32 bytes)")
        signer = cls(_check_name(name), material[1:])
        if signer.key_id != ident:
            raise NoteError("bad_key", "key ID does not match the derived public key")
        return signer

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    def verifier(self) -> NoteVerifier:
        return self._verifier

    def skey(self) -> str:
        material = b64encode(bytes([ALG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{material}"

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


# --- Notes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes (after the ID)."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {b64encode(raw)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, *unverified* signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """The result of :func:`open_note`: the text, the signatures verified by a known key
    and the signatures from unknown keys (kept, not trusted)."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _decode(message: str | bytes) -> str:
    if isinstance(message, bytes):
        if len(message) > MAX_NOTE_BYTES:
            raise NoteError("malformed_note", "note too large")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("malformed_note", "note is not valid UTF-8") from exc
    if not isinstance(message, str):
        raise NoteError("malformed_note", "note must be text")
    try:
        if len(message.encode("utf-8")) > MAX_NOTE_BYTES:
            raise NoteError("malformed_note", "note too large")
    except UnicodeEncodeError as exc:
        raise NoteError("malformed_note", "note is not valid UTF-8") from exc
    return message


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("malformed_note", "note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("malformed_note", "control character in note")


def parse_note(message: str | bytes) -> Note:
    """Split a signed note into text and signature lines, checking the syntax only."""
    msg = _decode(message)
    _check_note_text(msg)
    split = msg.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed_note", "no blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise NoteError("malformed_note", "no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed_note", f"more than {MAX_SIGNATURES} signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed_note", "signature line must start with an em dash and a space")
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise NoteError("malformed_note", "signature line must be '— name base64'")
        name, encoded = fields
        if not is_valid_key_name(name):
            raise NoteError("malformed_note", "invalid key name in a signature line")
        raw = b64decode_strict(encoded, "signature")
        if len(raw) < 5:
            raise NoteError("malformed_note", "signature too short")
        sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(text, tuple(sigs))


def _index_verifiers(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise NoteError("bad_key", "verifiers must be NoteVerifier objects")
        key = (v.name, v.key_id)
        if key in known and known[key] != v:
            raise NoteError("ambiguous_key", f"two different keys named {v.name}+{v.key_id:08x}")
        known[key] = v
    return known


def open_note(message: str | bytes, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    """Parse and verify a signed note (signed-note §Signatures).

    Raises :class:`NoteError` if the note is malformed, if a signature from a known key
    fails (``invalid_signature``), or if no known key signed it (``no_known_signature``).
    Duplicate signature lines are reported once.
    """
    note = parse_note(message)
    known = _index_verifiers(verifiers)
    body = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if not verifier.verify(body, sig.signature):
            raise NoteError("invalid_signature", f"bad signature from {sig.name}+{sig.key_id:08x}")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise NoteError("no_known_signature", "note has no signature from a known key")
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def sign_note(
    text: str, signers: Sequence[NoteSigner], keep: Sequence[NoteSignature] = ()
) -> str:
    """Sign ``text`` with each signer; ``keep`` adds existing signature lines (from
    other keys, such as witnesses) before the new ones."""
    if not isinstance(text, str):
        raise NoteError("malformed_note", "note text must be a str")
    _check_note_text(_decode(text))
    if not signers:
        raise NoteError("malformed_note", "at least one signer is needed")
    if len(signers) + len(keep) > MAX_SIGNATURES:
        raise NoteError("malformed_note", f"more than {MAX_SIGNATURES} signatures")
    body = text.encode("utf-8")
    mine = {(s.name, s.key_id) for s in signers}
    lines = [sig.line() for sig in keep if (_check_name(sig.name), sig.key_id) not in mine]
    lines += [NoteSignature(s.name, s.key_id, s.sign(body)).line() for s in signers]
    return text + "\n" + "".join(lines)


# --- Checkpoints ---------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lines = (self.origin, *self.extensions)
        for line in lines:
            if not isinstance(line, str) or not line or any(ord(c) < 0x20 for c in line):
                raise NoteError("malformed_checkpoint", "origin and extension lines must be non-empty lines")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size < 1 << 63:
            raise NoteError("malformed_checkpoint", "tree size out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise NoteError("malformed_checkpoint", "root hash must be 32 bytes")

    def text(self) -> str:
        body = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "\n".join(body) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (tlog-checkpoint §Note text), strictly."""
        if not isinstance(text, str) or not text.endswith("\n"):
            raise NoteError("malformed_checkpoint", "checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("malformed_checkpoint", "checkpoint needs origin, size and root lines")
        origin, size_line, root_line, *extensions = lines
        try:
            size = parse_canonical_uint(size_line, "tree size")
            root = b64decode_strict(root_line, "root hash")
        except NoteError as exc:
            raise NoteError("malformed_checkpoint", str(exc)) from exc
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(
    checkpoint: Checkpoint, signers: Sequence[NoteSigner], keep: Sequence[NoteSignature] = ()
) -> str:
    """The signed checkpoint note."""
    return sign_note(checkpoint.text(), signers, keep)


def open_checkpoint(
    message: str | bytes, verifiers: Sequence[NoteVerifier], origin: str | None = None
) -> tuple[Checkpoint, VerifiedNote]:
    """Verify a signed checkpoint and parse its body.

    With ``origin`` given, the checkpoint must carry exactly that origin line.
    """
    note = open_note(message, verifiers)
    checkpoint = Checkpoint.from_text(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError("wrong_origin", f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint, note
