"""Evidence bundles: everything a sender needs to check a delivery offline.

A bundle (JSON, ``version`` 1) holds:

- ``logKey``: the log's signed-note verifier key (informative; the verifier brings its
  own trusted key, and the two must be equal);
- ``entries``: 1 to 16 signed records (:mod:`zk.evidence.record`) of one blob, each
  with a C2SP tlog-proof (:mod:`zk.evidence.proof_format`) of its log entry (the
  32-byte record hash) against one and the same signed checkpoint;
- ``acknowledgement``: the recipient's acknowledgement of one of those records
  (:mod:`zk.evidence.ack`), or null;
- ``anchor``: the checkpoint published on an EVM ledger: chain id, contract, tx hash,
  block number, block time, tree size, root hash;
- ``consistency``: an RFC 9162 consistency proof between the bundle's checkpoint and
  the anchored tree, from the smaller to the larger size (empty if equal).

:func:`verify_bundle` runs these checks, always all of them and always in this order,
and names the first failure:

1. ``record_signature``: every record's EIP-712 signature recovers to its issuer; all
   records concern one blob and chain.
2. ``record_issuer``: every issuer is one of the verifier's trusted relay keys.
3. ``acknowledgement``: if present, it refers to a record of the bundle, verifies, and
   comes from a trusted group: a Semaphore proof's root is a root of a trusted group valid
   at the acknowledged record's event time, an EdDSA signer's commitment is a member of one.
4. ``inclusion_proof``: each record's leaf is at its index under the checkpoint root.
5. ``checkpoint_signature``: the checkpoint is signed by the trusted log key and its
   origin is that key's name.
6. ``consistency_with_anchor``: the anchored tree covers every record (size > index)
   and is consistent with the checkpoint.
7. ``anchor_contract``: the bundle's anchor names the verifier's trusted chain and
   anchor contract (the bundle's claim is never used to find the contract).
8. ``anchor_on_ledger``: ``anchor_lookup(origin, tree_size)``, which reads the trusted
   contract, returns the anchored root and the block time.

Trust model (docs/evidence.md, "Trust model"): every trusted value (log key, relay keys,
group roots, anchor contract and chain, ledger) is the verifier's own input, never read
from the bundle. A check whose trusted value was not given is ``not_checked`` and marked
``missing_trust``; the verdict is then neither ``valid`` nor ``complete``, with the
reason in the check's detail. ``valid`` thus means: no check failed and every check that
applies ran against a trusted value (only an absent acknowledgement may be skipped).

Everything here is offline and pure: ledger access is the injected callables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from zk import strict_json
from zk.evidence import merkle
from zk.evidence.ack import (
    Acknowledgement,
    AckError,
    EddsaAcknowledgement,
    SemaphoreAcknowledgement,
    acknowledgement_from_dict,
)
from zk.evidence.note import Checkpoint, NoteError, NoteVerifier, b64decode_strict, b64encode, open_checkpoint, parse_note
from zk.evidence.proof_format import TlogProof, TlogProofError, parse_tlog_proof
from zk.evidence.record import (
    MAX_JSON_INT,
    RecordError,
    SignedRecord,
    verify_record_signature,
)
from zk.proof import SemaphoreProof, verify_proof

BUNDLE_VERSION = 1
MAX_ENTRIES = 16
CHECK_NAMES = (
    "record_signature",
    "record_issuer",
    "acknowledgement",
    "inclusion_proof",
    "checkpoint_signature",
    "consistency_with_anchor",
    "anchor_contract",
    "anchor_on_ledger",
)

#: ``anchor_lookup(log_id, tree_size) -> (root_hash, block_time) | None``; ``log_id`` is
#: the checkpoint origin. It must read the verifier's trusted anchor contract.
AnchorLookup = Callable[[str, int], tuple[bytes, int] | None]
#: ``group_root_check(root, event_time) -> bool``: whether ``root`` is a root of a trusted
#: group that was still valid at ``event_time`` (the acknowledged record's, UTC seconds): the
#: current root, or one superseded no earlier than ``event_time`` minus the group's root
#: window (the contract's ``isRootValid`` rule, docs/evidence.md), so a member removed long
#: before the record cannot acknowledge it with an old root.
GroupRootCheck = Callable[[int, int], bool]
#: ``member_check(commitment) -> bool``: whether ``commitment`` is a member of a trusted group.
MemberCheck = Callable[[int], bool]

_HEX32 = re.compile(r"0x[0-9a-f]{64}")


class BundleError(ValueError):
    """A bundle is malformed (its structure, not its cryptography)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_int(data: Mapping[str, Any], key: str, low: int = 0) -> int:
    value = data[key]
    if not _is_int(value) or not low <= value <= MAX_JSON_INT:
        raise BundleError(f"{key} must be an integer in [{low}, 2^53)")
    return int(value)


def _parse_hex32(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise BundleError(f"{name} must be 0x followed by 64 lower-case hex digits")
    return bytes.fromhex(value[2:])


def _keys(data: object, keys: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or set(data) != keys:
        raise BundleError(f"{what} has exactly the keys {', '.join(sorted(keys))}")
    return data


@dataclass(frozen=True)
class Anchor:
    """A checkpoint (tree size, root) as recorded on an EVM ledger."""

    chain_id: int
    contract: str
    tx_hash: bytes
    block_number: int
    block_time: int
    tree_size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        for name in ("chain_id", "block_number", "block_time", "tree_size"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= MAX_JSON_INT:
                raise BundleError(f"anchor {name} must be an integer in [0, 2^53)")
        if self.chain_id < 1 or self.tree_size < 1:
            raise BundleError("anchor chain id and tree size must be positive")
        if (
            not isinstance(self.contract, str)
            or not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.contract)
            or to_checksum_address(self.contract) != self.contract
        ):
            raise BundleError("anchor contract must be an EIP-55 checksummed address")
        for name in ("tx_hash", "root_hash"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise BundleError(f"anchor {name} must be 32 bytes")

    def to_dict(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "contract": self.contract,
            "txHash": "0x" + self.tx_hash.hex(),
            "blockNumber": self.block_number,
            "blockTime": self.block_time,
            "treeSize": self.tree_size,
            "rootHash": "0x" + self.root_hash.hex(),
        }

    @classmethod
    def from_dict(cls, data: object) -> Anchor:
        d = _keys(data, {"chainId", "contract", "txHash", "blockNumber", "blockTime", "treeSize", "rootHash"}, "anchor")
        return cls(
            chain_id=_json_int(d, "chainId", 1),
            contract=d["contract"],
            tx_hash=_parse_hex32(d["txHash"], "txHash"),
            block_number=_json_int(d, "blockNumber"),
            block_time=_json_int(d, "blockTime"),
            tree_size=_json_int(d, "treeSize", 1),
            root_hash=_parse_hex32(d["rootHash"], "rootHash"),
        )


@dataclass(frozen=True)
class TrustedAnchor:
    """The verifier's own anchor configuration: the chain and EvidenceAnchor contract it
    trusts (from its deployment manifest), compared with the bundle's claim."""

    chain_id: int
    contract: str

    def __post_init__(self) -> None:
        if not _is_int(self.chain_id) or self.chain_id < 1:
            raise ValueError("trusted chain id must be a positive integer")
        if not isinstance(self.contract, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.contract):
            raise ValueError("trusted anchor contract must be an address")
        object.__setattr__(self, "contract", to_checksum_address(self.contract))


@dataclass(frozen=True)
class ConsistencyLink:
    """An RFC 9162 consistency proof from ``from_size`` to ``to_size``."""

    from_size: int
    to_size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not _is_int(self.from_size) or not _is_int(self.to_size) or not 1 <= self.from_size <= self.to_size:
            raise BundleError("consistency sizes must satisfy 1 <= fromSize <= toSize")
        if len(self.hashes) > merkle.MAX_PROOF_HASHES or any(
            not isinstance(h, bytes) or len(h) != 32 for h in self.hashes
        ):
            raise BundleError("consistency proof must be at most 64 hashes of 32 bytes")

    def to_dict(self) -> dict[str, Any]:
        return {"fromSize": self.from_size, "toSize": self.to_size, "proof": [b64encode(h) for h in self.hashes]}

    @classmethod
    def from_dict(cls, data: object) -> ConsistencyLink:
        d = _keys(data, {"fromSize", "toSize", "proof"}, "consistency")
        proof = d["proof"]
        if not isinstance(proof, list):
            raise BundleError("consistency proof must be a list")
        try:
            hashes = tuple(b64decode_strict(h, "consistency hash") for h in proof)
        except NoteError as exc:
            raise BundleError(str(exc)) from None
        return cls(_json_int(d, "fromSize", 1), _json_int(d, "toSize", 1), hashes)


@dataclass(frozen=True)
class BundleEntry:
    """A signed record and the tlog-proof of its log entry."""

    signed: SignedRecord
    proof: TlogProof

    def to_dict(self) -> dict[str, Any]:
        return {**self.signed.to_dict(), "tlogProof": self.proof.format()}

    @classmethod
    def from_dict(cls, data: object) -> BundleEntry:
        d = _keys(data, {"record", "signature", "tlogProof"}, "bundle entry")
        signed = SignedRecord.from_dict({"record": d["record"], "signature": d["signature"]})
        if not isinstance(d["tlogProof"], str):
            raise BundleError("tlogProof must be a string")
        return cls(signed, parse_tlog_proof(d["tlogProof"]))


@dataclass(frozen=True)
class EvidenceBundle:
    """See the module docstring. Construction checks structure, not cryptography."""

    log_key: str
    entries: tuple[BundleEntry, ...]
    anchor: Anchor
    consistency: ConsistencyLink
    acknowledgement: Acknowledgement | None = None
    version: int = field(default=BUNDLE_VERSION)

    def __post_init__(self) -> None:
        if self.version != BUNDLE_VERSION or not _is_int(self.version):
            raise BundleError(f"unsupported bundle version {self.version!r}")
        try:
            NoteVerifier.from_vkey(self.log_key)
        except NoteError as exc:
            raise BundleError(f"logKey: {exc}") from None
        if isinstance(self.entries, list):
            object.__setattr__(self, "entries", tuple(self.entries))
        if not isinstance(self.entries, tuple) or not 1 <= len(self.entries) <= MAX_ENTRIES:
            raise BundleError(f"a bundle has 1 to {MAX_ENTRIES} entries")
        if not all(isinstance(e, BundleEntry) for e in self.entries):
            raise BundleError("entries must be BundleEntry objects")
        if len({e.proof.checkpoint for e in self.entries}) != 1:
            raise BundleError("all entries must be proven against the same checkpoint")
        if not isinstance(self.anchor, Anchor) or not isinstance(self.consistency, ConsistencyLink):
            raise BundleError("anchor and consistency are required")
        if self.acknowledgement is not None and not isinstance(
            self.acknowledgement, (EddsaAcknowledgement, SemaphoreAcknowledgement)
        ):
            raise BundleError("acknowledgement must be an Acknowledgement or None")

    @property
    def checkpoint_note(self) -> str:
        """The signed checkpoint every entry is proven against."""
        return self.entries[0].proof.checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "logKey": self.log_key,
            "entries": [e.to_dict() for e in self.entries],
            "acknowledgement": None if self.acknowledgement is None else self.acknowledgement.to_dict(),
            "anchor": self.anchor.to_dict(),
            "consistency": self.consistency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> EvidenceBundle:
        d = _keys(data, {"version", "logKey", "entries", "acknowledgement", "anchor", "consistency"}, "bundle")
        if not _is_int(d["version"]) or d["version"] != BUNDLE_VERSION:
            raise BundleError(f"unsupported bundle version {d['version']!r}")
        if not isinstance(d["entries"], list) or not isinstance(d["logKey"], str):
            raise BundleError("entries must be a list and logKey a string")
        try:
            ack = None if d["acknowledgement"] is None else acknowledgement_from_dict(d["acknowledgement"])
            entries = tuple(BundleEntry.from_dict(e) for e in d["entries"][: MAX_ENTRIES + 1])
        except (AckError, RecordError, TlogProofError) as exc:
            raise BundleError(str(exc)) from None
        return cls(
            log_key=d["logKey"],
            entries=entries,
            anchor=Anchor.from_dict(d["anchor"]),
            consistency=ConsistencyLink.from_dict(d["consistency"]),
            acknowledgement=ack,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> EvidenceBundle:
        return cls.from_dict(strict_json.loads(text, floats=False, error=BundleError))


# --- Building ------------------------------------------------------------------------


def build_bundle(
    entries: Sequence[tuple[SignedRecord, int]],
    reader: merkle.TreeReader,
    signed_checkpoint: str,
    anchor: Anchor,
    log_key: str,
    acknowledgement: Acknowledgement | None = None,
) -> EvidenceBundle:
    """Assemble a bundle from the log's tree: ``entries`` are (signed record, log index).

    Proofs are computed against the checkpoint's size and the anchor's size, both of
    which must be within ``reader``. Refuses an index whose stored leaf is not the
    record's leaf, and a checkpoint whose root is not the tree's.
    """
    checkpoint = Checkpoint.from_text(parse_note(signed_checkpoint).text)
    if merkle.root_hash(reader, checkpoint.size) != checkpoint.root_hash:
        raise BundleError("checkpoint root is not the tree's root at that size")
    if merkle.root_hash(reader, anchor.tree_size) != anchor.root_hash:
        raise BundleError("anchor root is not the tree's root at that size")
    built: list[BundleEntry] = []
    for signed, index in entries:
        if index >= checkpoint.size or reader.leaf_hash(index) != signed.record.leaf_hash():
            raise BundleError(f"log entry {index} is not this record under the checkpoint")
        path = merkle.inclusion_proof(reader, index, checkpoint.size)
        built.append(BundleEntry(signed, TlogProof(index, tuple(path), signed_checkpoint)))
    low, high = sorted((checkpoint.size, anchor.tree_size))
    link = ConsistencyLink(low, high, tuple(merkle.consistency_proof(reader, low, high)))
    return EvidenceBundle(log_key, tuple(built), anchor, link, acknowledgement)


# --- Verification --------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One verification step: ``ok`` is True, False, or None when not checked;
    ``missing_trust`` marks a check that could not run for lack of a trusted value."""

    name: str
    ok: bool | None
    detail: str = ""
    missing_trust: bool = False

    @property
    def status(self) -> str:
        return "not_checked" if self.ok is None else ("ok" if self.ok else "failed")


@dataclass(frozen=True)
class TimelineEvent:
    time: int
    label: str
    reference: str


@dataclass(frozen=True)
class Verdict:
    """``valid``: no check failed and none lacked its trusted value; ``complete``: every
    check also ran and passed (an absent acknowledgement leaves it False)."""

    valid: bool
    checks: tuple[Check, ...]
    first_failure: str | None
    timeline: tuple[TimelineEvent, ...] = ()

    @property
    def complete(self) -> bool:
        return all(c.ok is True for c in self.checks)

    @property
    def passed(self) -> bool:
        """No check failed (whether or not every check had its trusted value)."""
        return self.first_failure is None

    @property
    def missing_trust(self) -> tuple[str, ...]:
        """The checks that could not run for lack of a trusted value."""
        return tuple(c.name for c in self.checks if c.missing_trust)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)


class _Failed(Exception):
    """Internal: a check failed, with a detail message."""


class _Untrusted(Exception):
    """Internal: a check could not run because a trusted value is missing."""


def _check_records(bundle: EvidenceBundle) -> str:
    records = [e.signed.record for e in bundle.entries]
    for i, entry in enumerate(bundle.entries):
        if not verify_record_signature(entry.signed):
            raise _Failed(f"entry {i}: signature does not recover to the issuer")
    if len({r.blob_digest for r in records}) != 1:
        raise _Failed("records concern different blobs")
    if len({r.chain_id for r in records}) != 1:
        raise _Failed("records are signed for different chains")
    if len({r.record_hash() for r in records}) != len(records):
        raise _Failed("duplicate record")
    return f"{len(records)} record(s) signed by their issuers"


def _check_issuers(bundle: EvidenceBundle, trusted_issuers: Collection[str] | None) -> str:
    issuers = sorted({e.signed.record.issuer for e in bundle.entries})
    if trusted_issuers is None:
        raise _Untrusted(f"issuer(s) {', '.join(issuers)} not checked: no trusted relay keys given")
    # Addresses compare by value: a trust list may be written in any letter case.
    trusted = {a.lower() for a in trusted_issuers}
    for i, entry in enumerate(bundle.entries):
        if entry.signed.record.issuer.lower() not in trusted:
            raise _Failed(f"entry {i}: issuer {entry.signed.record.issuer} is not a trusted relay key")
    return f"issuer(s) {', '.join(issuers)} are trusted relay keys"


def _ask(check: Callable[..., bool], value: int, what: str, *more: int) -> bool:
    try:
        return check(value, *more) is True
    except Exception as exc:  # fail closed: a lookup that cannot answer proves nothing
        raise _Failed(f"{what} lookup error: {type(exc).__name__}") from None


def _check_ack(
    bundle: EvidenceBundle,
    semaphore_verifier: Callable[[SemaphoreProof], bool],
    group_root_check: GroupRootCheck | None,
    member_check: MemberCheck | None,
) -> str:
    ack = bundle.acknowledgement
    assert ack is not None
    acknowledged = next((e.signed.record for e in bundle.entries if e.signed.record.record_hash() == ack.record_hash), None)
    if acknowledged is None:
        raise _Failed("acknowledges a record that is not in the bundle")
    if isinstance(ack, EddsaAcknowledgement):
        if not ack.verify():
            raise _Failed("EdDSA-Poseidon signature does not verify")
        commitment = ack.commitment()
        if member_check is None:
            raise _Untrusted(f"signed by commitment {commitment}, not checked: no trusted groups given")
        if not _ask(member_check, commitment, "group member"):
            raise _Failed(f"signer commitment {commitment} is not a member of a trusted group")
        return f"signed by commitment {commitment}, a member of a trusted group"
    try:
        ack.check(bundle.entries[0].signed.record.blob_digest, semaphore_verifier)
    except AckError as exc:
        raise _Failed(str(exc)) from None
    root = ack.proof.merkle_tree_root
    if group_root_check is None:
        raise _Untrusted(f"anonymous proof verifies; group root {root} not checked: no trusted groups given")
    if not _ask(group_root_check, root, "group root", acknowledged.event_time):
        raise _Failed(f"group root {root} is not a root of a trusted group valid at the record's event time")
    return f"anonymous proof by a member of a trusted group (root {root})"


def _check_inclusion(bundle: EvidenceBundle, checkpoint: Checkpoint) -> str:
    for i, entry in enumerate(bundle.entries):
        try:
            merkle.check_inclusion(
                entry.signed.record.leaf_hash(),
                entry.proof.index,
                checkpoint.size,
                list(entry.proof.hashes),
                checkpoint.root_hash,
            )
        except merkle.ProofError as exc:
            raise _Failed(f"entry {i}: {exc}") from None
    return f"{len(bundle.entries)} entr(y/ies) in the tree of size {checkpoint.size}"


def _check_checkpoint(bundle: EvidenceBundle, trusted: NoteVerifier) -> str:
    if bundle.log_key != trusted.vkey():
        raise _Failed("the bundle's log key is not the trusted log key")
    try:
        open_checkpoint(bundle.checkpoint_note, [trusted], origin=trusted.name)
    except NoteError as exc:
        raise _Failed(str(exc)) from None
    return f"signed by {trusted.name}+{trusted.key_id:08x}"


def _check_anchor_consistency(bundle: EvidenceBundle, checkpoint: Checkpoint) -> str:
    anchor, link = bundle.anchor, bundle.consistency
    if anchor.chain_id != bundle.entries[0].signed.record.chain_id:
        raise _Failed("anchor chain differs from the records' EIP-712 chain id")
    last_index = max(e.proof.index for e in bundle.entries)
    if anchor.tree_size <= last_index:
        raise _Failed(f"anchored tree (size {anchor.tree_size}) does not cover entry {last_index}")
    if checkpoint.size <= anchor.tree_size:
        small, large = (checkpoint.size, checkpoint.root_hash), (anchor.tree_size, anchor.root_hash)
    else:
        small, large = (anchor.tree_size, anchor.root_hash), (checkpoint.size, checkpoint.root_hash)
    if (link.from_size, link.to_size) != (small[0], large[0]):
        raise _Failed(f"consistency proof is for {link.from_size}->{link.to_size}, need {small[0]}->{large[0]}")
    try:
        merkle.check_consistency(small[0], large[0], small[1], large[1], list(link.hashes))
    except merkle.ProofError as exc:
        raise _Failed(str(exc)) from None
    return f"checkpoint size {checkpoint.size} consistent with anchored size {anchor.tree_size}"


def _check_anchor_contract(bundle: EvidenceBundle, trusted: TrustedAnchor | None) -> str:
    anchor = bundle.anchor
    if trusted is None:
        raise _Untrusted(f"the bundle names contract {anchor.contract} on chain {anchor.chain_id}; "
                         "no trusted anchor contract given")
    if (anchor.chain_id, anchor.contract.lower()) != (trusted.chain_id, trusted.contract.lower()):
        raise _Failed(f"the bundle names contract {anchor.contract} on chain {anchor.chain_id}, the "
                      f"trusted anchor is {trusted.contract} on chain {trusted.chain_id}")
    return f"the trusted contract {trusted.contract} on chain {trusted.chain_id}"


def _check_ledger(bundle: EvidenceBundle, checkpoint: Checkpoint, lookup: AnchorLookup | None) -> str:
    if lookup is None:
        raise _Untrusted("no ledger lookup given")
    anchor = bundle.anchor
    try:
        found = lookup(checkpoint.origin, anchor.tree_size)
    except Exception as exc:  # fail closed: a lookup that cannot answer proves nothing
        raise _Failed(f"ledger lookup error: {type(exc).__name__}: {exc}") from None
    if found is None:
        raise _Failed(f"no anchor for {checkpoint.origin} at size {anchor.tree_size} on the ledger")
    if not isinstance(found, tuple) or len(found) != 2:
        raise _Failed("ledger lookup returned something other than (root, time)")
    root, timestamp = found
    if root != anchor.root_hash:
        raise _Failed("the ledger's root differs from the bundle's anchor")
    if timestamp != anchor.block_time:
        raise _Failed("the ledger's block time differs from the bundle's anchor")
    return f"anchored on chain {anchor.chain_id} at block {anchor.block_number}"


def _timeline(bundle: EvidenceBundle) -> tuple[TimelineEvent, ...]:
    events = [
        TimelineEvent(e.signed.record.event_time, e.signed.record.event.value, e.signed.record.evidence_id())
        for e in bundle.entries
    ]
    events.append(TimelineEvent(bundle.anchor.block_time, "Anchored", "0x" + bundle.anchor.tx_hash.hex()))
    return tuple(sorted(events, key=lambda ev: ev.time))


def verify_bundle(
    bundle: EvidenceBundle | str | bytes,
    trusted_log_key: str | NoteVerifier,
    anchor_lookup: AnchorLookup | None = None,
    *,
    trusted_issuers: Collection[str] | None = None,
    group_root_check: GroupRootCheck | None = None,
    member_check: MemberCheck | None = None,
    trusted_anchor: TrustedAnchor | None = None,
    semaphore_verifier: Callable[[SemaphoreProof], bool] = verify_proof,
) -> Verdict:
    """Verify a bundle offline (module docstring); never raises on bad bundle input.

    Trusted values, all the caller's own: ``trusted_log_key``, ``trusted_issuers`` (relay
    addresses), ``group_root_check`` and ``member_check`` (trusted groups, for Semaphore and
    EdDSA acknowledgements), ``trusted_anchor`` (chain and contract) and ``anchor_lookup``
    (reading that contract). A missing one leaves its check ``not_checked`` with
    ``missing_trust``, and the verdict not ``valid``.

    A bundle given as JSON text that does not parse yields a single failed ``format``
    check. ``trusted_log_key`` must be a valid verifier key (it is the caller's
    configuration, so a bad one raises :class:`~zk.evidence.note.NoteError`).
    """
    trusted = trusted_log_key if isinstance(trusted_log_key, NoteVerifier) else NoteVerifier.from_vkey(trusted_log_key)
    if not isinstance(bundle, EvidenceBundle):
        try:
            bundle = EvidenceBundle.from_json(bundle)
        except (BundleError, RecordError, TlogProofError, AckError, NoteError) as exc:
            return Verdict(False, (Check("format", False, str(exc)),), "format")
    checkpoint = bundle.entries[0].proof.checkpoint_body()
    steps: list[tuple[str, Callable[[], str] | None, str]] = [
        ("record_signature", lambda: _check_records(bundle), ""),
        ("record_issuer", lambda: _check_issuers(bundle, trusted_issuers), ""),
        (
            "acknowledgement",
            (lambda: _check_ack(bundle, semaphore_verifier, group_root_check, member_check))
            if bundle.acknowledgement is not None
            else None,
            "no acknowledgement in the bundle",
        ),
        ("inclusion_proof", lambda: _check_inclusion(bundle, checkpoint), ""),
        ("checkpoint_signature", lambda: _check_checkpoint(bundle, trusted), ""),
        ("consistency_with_anchor", lambda: _check_anchor_consistency(bundle, checkpoint), ""),
        ("anchor_contract", lambda: _check_anchor_contract(bundle, trusted_anchor), ""),
        ("anchor_on_ledger", lambda: _check_ledger(bundle, checkpoint, anchor_lookup), ""),
    ]
    checks: list[Check] = []
    for name, run, skipped in steps:
        if run is None:
            checks.append(Check(name, None, skipped))
            continue
        try:
            checks.append(Check(name, True, run()))
        except _Failed as exc:
            checks.append(Check(name, False, str(exc)))
        except _Untrusted as exc:
            checks.append(Check(name, None, str(exc), missing_trust=True))
    first = next((c.name for c in checks if c.ok is False), None)
    valid = first is None and not any(c.missing_trust for c in checks)
    return Verdict(valid, tuple(checks), first, _timeline(bundle))
