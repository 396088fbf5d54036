"""Typed wrapper of the EvidenceAnchor contract (``contracts/EvidenceAnchor.sol``).

A log is bound to its Ed25519 key: its on-chain id is ``keccak256(abi.encode(origin,
public_key))`` (:func:`log_id`), origin being its C2SP tlog-checkpoint origin line (the
key's name). Methods take that 32-byte id. Only the contract's registrar (its deployer)
registers logs, so a log id cannot be claimed first by someone else (docs/evidence.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.types import TxReceipt

from registry.ledger.base import BoundContract, LedgerEvent, check_address, check_uint
from registry.ledger.errors import AnchorNotFound


def log_id(origin: str, public_key: bytes) -> bytes:
    """The 32-byte id of the log with checkpoint origin ``origin`` signed by the Ed25519
    key ``public_key``: ``keccak256(abi.encode(origin, public_key))`` (``logIdOf``)."""
    if not isinstance(origin, str) or not origin:
        raise ValueError("log origin must be a non-empty string")
    if not isinstance(public_key, (bytes, bytearray)) or len(public_key) != 32:
        raise ValueError("a log key is a 32-byte Ed25519 public key")
    return keccak(abi_encode(["string", "bytes32"], [origin, bytes(public_key)]))


def _lid(log: bytes) -> bytes:
    if isinstance(log, (bytes, bytearray)) and len(log) == 32:
        return bytes(log)
    raise ValueError("a log is named by its 32-byte id: log_id(origin, public_key)")


@dataclass(frozen=True)
class LogInfo:
    log_id: bytes
    owner: str
    latest_size: int
    anchor_count: int


@dataclass(frozen=True)
class AnchorRecord:
    log_id: bytes
    tree_size: int
    root_hash: bytes
    timestamp: int
    block_number: int
    previous_size: int


class AnchorContract(BoundContract):
    """Anchors of evidence-log checkpoints: operators, strictly growing sizes, timestamps."""

    ARTIFACT = "EvidenceAnchor"

    def register_log(
        self, origin: str, public_key: bytes, owner: str | None = None, operators: Sequence[str] | None = None
    ) -> bytes:
        """Register the log (registrar only; typed error ``CallerIsNotRegistrar``) owned by
        ``owner`` (default: the signer) with ``operators`` (default: the owner); its id."""
        if self.tx is None:
            raise ValueError("register_log needs a signing account")
        lid = log_id(origin, public_key)
        owner = check_address(owner if owner is not None else self.tx.address, "owner")
        ops = [check_address(o, "operator") for o in (operators if operators is not None else [owner])]
        self._send(self.contract.functions.registerLog(origin, bytes(public_key), owner, ops))
        return lid

    def set_operator(self, log: bytes, operator: str, enabled: bool = True, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.setOperator(_lid(log), check_address(operator, "operator"), bool(enabled))
        return self._send(fn, wait)

    def transfer_owner(self, log: bytes, new_owner: str, wait: bool = True) -> TxReceipt | HexBytes:
        """First step of the owner transfer (the zero address cancels a pending one)."""
        fn = self.contract.functions.transferLogOwner(_lid(log), check_address(new_owner, "new_owner"))
        return self._send(fn, wait)

    def accept_owner(self, log: bytes, wait: bool = True) -> TxReceipt | HexBytes:
        """Second step, by the pending owner: the previous owner's operators are dropped."""
        return self._send(self.contract.functions.acceptLogOwner(_lid(log)), wait)

    def anchor(self, log: bytes, tree_size: int, root_hash: bytes, wait: bool = True) -> TxReceipt | HexBytes:
        """Anchor checkpoint (tree_size, root_hash): typed errors CallerIsNotOperator,
        TreeSizeNotGrowing, RootHashIsZero, LogNotRegistered."""
        if not isinstance(root_hash, (bytes, bytearray)) or len(root_hash) != 32:
            raise ValueError("root_hash must be 32 bytes")
        fn = self.contract.functions.anchor(_lid(log), check_uint(tree_size, "tree_size", 64), bytes(root_hash))
        return self._send(fn, wait)

    # ------------------------------------------------------------------ views

    def registrar(self) -> str:
        """The only account that may register logs (the contract's deployer)."""
        return str(self._call(self.contract.functions.registrar()))

    def is_operator(self, log: bytes, operator: str) -> bool:
        return bool(self._call(self.contract.functions.isOperator(_lid(log), check_address(operator, "operator"))))

    def pending_owner(self, log: bytes) -> str | None:
        pending = str(self._call(self.contract.functions.pendingLogOwner(_lid(log))))
        return None if int(pending, 16) == 0 else pending

    def log_info(self, log: bytes) -> LogInfo:
        """Owner, latest size and anchor count (typed error ``LogNotRegistered``)."""
        lid = _lid(log)
        owner, latest, count = self._call(self.contract.functions.getLog(lid))
        return LogInfo(lid, str(owner), int(latest), int(count))

    def get_anchor(self, log: bytes, tree_size: int) -> AnchorRecord | None:
        """The anchor at exactly ``tree_size`` (None if that size was never anchored)."""
        lid = _lid(log)
        try:
            raw = self._call(self.contract.functions.getAnchor(lid, check_uint(tree_size, "tree_size", 64)))
        except AnchorNotFound:
            return None
        return self._record(lid, tree_size, raw)

    def latest_anchor(self, log: bytes) -> AnchorRecord | None:
        lid = _lid(log)
        try:
            size, raw = self._call(self.contract.functions.latestAnchor(lid))
        except AnchorNotFound:
            return None
        return self._record(lid, int(size), raw)

    def anchors(self, log: bytes, limit: int | None = None) -> list[AnchorRecord]:
        """A log's anchors from the newest back (following each anchor's previous size)."""
        out: list[AnchorRecord] = []
        current = self.latest_anchor(log)
        while current is not None and (limit is None or len(out) < limit):
            out.append(current)
            current = self.get_anchor(log, current.previous_size) if current.previous_size else None
        return out

    def anchor_events(self, log: bytes, from_block: int, to_block: int | str = "latest") -> list[LedgerEvent]:
        return self.events(from_block, to_block, names=["Anchored"], topic1=_lid(log))

    @staticmethod
    def _record(lid: bytes, tree_size: int, raw: Any) -> AnchorRecord:
        root_hash, timestamp, block_number, previous = raw
        return AnchorRecord(lid, tree_size, bytes(root_hash), int(timestamp), int(block_number), int(previous))
