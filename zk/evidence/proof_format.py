"""C2SP tlog-proof: an offline-verifiable inclusion proof (https://c2sp.org/tlog-proof).

Format (lines separated by U+000A)::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>        (optional; omitted when there is none)
    index <zero-based decimal index>
    <base64 SHA-256 hash>             (zero or more: the RFC 6962 inclusion path,
    ...                                leaf sibling first)
    <empty line>
    <the signed checkpoint, verbatim (c2sp.org/tlog-checkpoint)>

The extra data is not authenticated; this module never interprets it. Verification
(:func:`verify_tlog_proof`) follows the spec's steps 2 and 4: the checkpoint must be
signed by a trusted log key for the expected origin, then the inclusion path must
bind the caller-computed leaf hash to the checkpoint's root. Witness cosignatures
(step 3) are unknown signatures to this module and are ignored. The log key must be
named after the origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zk.evidence import merkle
from zk.evidence.note import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    b64decode_strict,
    b64encode,
    open_checkpoint,
    parse_canonical_uint,
    parse_note,
)

HEADER = "c2sp.org/tlog-proof@v1"


class TlogProofError(ValueError):
    """A tlog-proof is malformed or does not verify; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class TlogProof:
    """A parsed tlog-proof. ``checkpoint`` is the signed checkpoint note, verbatim."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < 1 << 63:
            raise TlogProofError("malformed_proof", "index out of range")
        if len(self.hashes) > merkle.MAX_PROOF_HASHES:
            raise TlogProofError("malformed_proof", "too many proof hashes")
        for h in self.hashes:
            if not isinstance(h, bytes) or len(h) != merkle.HASH_SIZE:
                raise TlogProofError("malformed_proof", "proof hashes must be 32 bytes")
        if self.extra is not None and (not isinstance(self.extra, bytes) or not self.extra):
            raise TlogProofError("malformed_proof", "extra data must be non-empty bytes (or absent)")
        try:
            note = parse_note(self.checkpoint)
            Checkpoint.from_text(note.text)
        except NoteError as exc:
            raise TlogProofError("malformed_checkpoint", str(exc)) from exc

    def checkpoint_body(self) -> Checkpoint:
        """The checkpoint body, parsed but *not* signature-verified."""
        return Checkpoint.from_text(parse_note(self.checkpoint).text)

    def format(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + b64encode(self.extra))
        lines.append(f"index {self.index}")
        lines += [b64encode(h) for h in self.hashes]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    """Parse a tlog-proof strictly (canonical decimal and base64, 32-byte hashes, the
    checkpoint a well-formed signed checkpoint note)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TlogProofError("malformed_proof", "not valid UTF-8") from exc
    if not isinstance(text, str):
        raise TlogProofError("malformed_proof", "proof must be text")
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise TlogProofError("malformed_proof", "no empty line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise TlogProofError("malformed_proof", f"first line must be {HEADER!r}")
    pos = 1
    extra: bytes | None = None
    try:
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = b64decode_strict(lines[pos][len("extra ") :], "extra data")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise TlogProofError("malformed_proof", "missing 'index N' line")
        index = parse_canonical_uint(lines[pos][len("index ") :], "index")
        hashes = tuple(b64decode_strict(line, "proof hash") for line in lines[pos + 1 :])
    except NoteError as exc:
        raise TlogProofError("malformed_proof", str(exc)) from exc
    return TlogProof(index, hashes, checkpoint, extra)


def verify_tlog_proof(
    proof: TlogProof, leaf_hash: bytes, verifiers: Sequence[NoteVerifier], origin: str
) -> Checkpoint:
    """Verify ``proof`` for an entry whose RFC 9162 leaf hash is ``leaf_hash``; return the
    verified checkpoint. Raises :class:`TlogProofError` (reason ``checkpoint`` or
    ``inclusion``) on failure."""
    try:
        checkpoint, note = open_checkpoint(proof.checkpoint, verifiers, origin=origin)
    except NoteError as exc:
        raise TlogProofError("checkpoint", str(exc)) from exc
    # The log's key is named after its origin (tlog-checkpoint §Signatures, a SHOULD
    # that this project makes a MUST); a verified witness cosignature is not enough.
    if not any(sig.name == origin for sig in note.verified):
        raise TlogProofError("checkpoint", f"no verified signature from a key named {origin!r}")
    try:
        merkle.check_inclusion(leaf_hash, proof.index, checkpoint.size, list(proof.hashes), checkpoint.root_hash)
    except merkle.ProofError as exc:
        raise TlogProofError("inclusion", str(exc)) from exc
    return checkpoint
