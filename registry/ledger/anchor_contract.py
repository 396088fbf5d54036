"""Typed wrapper of the EvidenceAnchor contract (``contracts/EvidenceAnchor.sol``).

A log is named by its C2SP tlog-checkpoint origin line; its on-chain id is
keccak256(origin). Methods take either the origin string or the 32-byte id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.types import TxReceipt

from registry.ledger.base import BoundContract, LedgerEvent, check_address, check_uint
from registry.ledger.errors import AnchorNotFound


def log_id(log: str | bytes) -> bytes:
    """The 32-byte id of a log given by origin string or id."""
    if isinstance(log, str):
        if not log:
            raise ValueError("log origin must not be empty")
        return keccak(text=log)
    if isinstance(log, (bytes, bytearray)) and len(log) == 32:
        return bytes(log)
    raise ValueError("a log is an origin string or a 32-byte id")


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

    def register_log(self, origin: str, operators: Sequence[str] | None = None) -> bytes:
        """Register a log (the signer owns it; operators default to the signer); return its id."""
        if self.tx is None:
            raise ValueError("register_log needs a signing account")
        if not isinstance(origin, str) or not origin:
            raise ValueError("log origin must be a non-empty string")
        ops = [check_address(o, "operator") for o in (operators if operators is not None else [self.tx.address])]
        self._send(self.contract.functions.registerLog(origin, ops))
        return log_id(origin)

    def set_operator(self, log: str | bytes, operator: str, enabled: bool = True, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.setOperator(log_id(log), check_address(operator, "operator"), bool(enabled))
        return self._send(fn, wait)

    def transfer_owner(self, log: str | bytes, new_owner: str, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.transferLogOwner(log_id(log), check_address(new_owner, "new_owner"))
        return self._send(fn, wait)

    def anchor(self, log: str | bytes, tree_size: int, root_hash: bytes, wait: bool = True) -> TxReceipt | HexBytes:
        """Anchor checkpoint (tree_size, root_hash): typed errors CallerIsNotOperator,
        TreeSizeNotGrowing, RootHashIsZero, LogNotRegistered."""
        if not isinstance(root_hash, (bytes, bytearray)) or len(root_hash) != 32:
            raise ValueError("root_hash must be 32 bytes")
        fn = self.contract.functions.anchor(log_id(log), check_uint(tree_size, "tree_size", 64), bytes(root_hash))
        return self._send(fn, wait)

    # ------------------------------------------------------------------ views

    def is_operator(self, log: str | bytes, operator: str) -> bool:
        return bool(self._call(self.contract.functions.isOperator(log_id(log), check_address(operator, "operator"))))

    def log_info(self, log: str | bytes) -> LogInfo:
        lid = log_id(log)
        owner, latest, count = self._call(self.contract.functions.getLog(lid))
        return LogInfo(lid, str(owner), int(latest), int(count))

    def get_anchor(self, log: str | bytes, tree_size: int) -> AnchorRecord | None:
        """The anchor at exactly ``tree_size`` (None if that size was never anchored)."""
        lid = log_id(log)
        try:
            raw = self._call(self.contract.functions.getAnchor(lid, check_uint(tree_size, "tree_size", 64)))
        except AnchorNotFound:
            return None
        return self._record(lid, tree_size, raw)

    def latest_anchor(self, log: str | bytes) -> AnchorRecord | None:
        lid = log_id(log)
        try:
            size, raw = self._call(self.contract.functions.latestAnchor(lid))
        except AnchorNotFound:
            return None
        return self._record(lid, int(size), raw)

    def anchors(self, log: str | bytes, limit: int | None = None) -> list[AnchorRecord]:
        """A log's anchors from the newest back (following each anchor's previous size)."""
        out: list[AnchorRecord] = []
        current = self.latest_anchor(log)
        while current is not None and (limit is None or len(out) < limit):
            out.append(current)
            current = self.get_anchor(log, current.previous_size) if current.previous_size else None
        return out

    def anchor_events(self, log: str | bytes, from_block: int, to_block: int | str = "latest") -> list[LedgerEvent]:
        return self.events(from_block, to_block, names=["Anchored"], topic1=log_id(log))

    @staticmethod
    def _record(lid: bytes, tree_size: int, raw: Any) -> AnchorRecord:
        root_hash, timestamp, block_number, previous = raw
        return AnchorRecord(lid, tree_size, bytes(root_hash), int(timestamp), int(block_number), int(previous))
