"""Shared plumbing of the typed contract wrappers: binding, calls, sends, event decoding."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from eth_typing import ABIEvent

from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import BlockIdentifier, LogReceipt, TxReceipt

from registry.ledger.artifacts import load_abi
from registry.ledger.errors import LedgerError
from registry.ledger.tx import Transactor, default_decoder, revert_data

UINT256_MAX = 2**256 - 1


def check_uint(value: object, name: str, bits: int = 256) -> int:
    """An ``int`` in [0, 2**bits); ``ValueError`` otherwise (bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be in [0, 2^{bits})")
    return value


def check_address(value: object, name: str) -> str:
    if not isinstance(value, str) or not Web3.is_address(value):
        raise ValueError(f"{name} is not an Ethereum address")
    return Web3.to_checksum_address(value)


def _plain(value: Any) -> Any:
    """web3's AttributeDict/tuples/HexBytes into plain dicts, lists and bytes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, HexBytes):
        return bytes(value)
    return value


@dataclass(frozen=True)
class LedgerEvent:
    """A decoded contract event with its position on the chain."""

    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = field(default=False)

    @classmethod
    def at(cls, name: str, args: dict[str, Any], address: str, log: Mapping[str, Any]) -> LedgerEvent:
        """Event ``name`` with ``args`` at the position ``log`` names: a web3 log receipt
        (ints, bytes) or a raw JSON-RPC log (hex strings); hashes as lower-case 0x hex."""
        return cls(
            name=name,
            args=args,
            address=address,
            block_number=rpc_int(log["blockNumber"]),
            block_hash=_hash_hex(log["blockHash"]),
            tx_hash=_hash_hex(log["transactionHash"]),
            log_index=rpc_int(log["logIndex"]),
            removed=bool(log.get("removed", False)),
        )


def rpc_int(value: Any) -> int:
    """A JSON-RPC quantity: an int, or a string (0x hex, else decimal)."""
    if isinstance(value, str):
        return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
    return int(value)


def _hash_hex(value: Any) -> str:
    return HexBytes(value).to_0x_hex() if isinstance(value, (bytes, bytearray)) else str(value).lower()


class BoundContract:
    """A deployed contract of artifact ``ARTIFACT`` at ``address``; ``tx`` signs writes."""

    ARTIFACT = ""

    def __init__(self, w3: Web3, address: str, tx: Transactor | None = None) -> None:
        self.w3 = w3
        self.address = check_address(address, "contract address")
        self.tx = tx
        self.contract: Contract = w3.eth.contract(address=Web3.to_checksum_address(self.address), abi=load_abi(self.ARTIFACT))
        self._decoder = tx.decoder if tx is not None else default_decoder()
        self._events_by_topic: dict[bytes, str] = {
            bytes(event_abi_to_log_topic(cast(ABIEvent, e))): str(e["name"])
            for e in load_abi(self.ARTIFACT)
            if e.get("type") == "event"
        }

    # ------------------------------------------------------------------ calls and sends

    def _call(self, fn: ContractFunction, block: BlockIdentifier = "latest") -> Any:
        if self.tx is not None:
            return self.tx.call(fn, block)
        try:
            return fn.call(block_identifier=block)
        except ContractLogicError as exc:
            raise self._decoder.decode(revert_data(exc)) from None

    def _send(self, fn: ContractFunction, wait: bool = True) -> TxReceipt | HexBytes:
        if self.tx is None:
            raise LedgerError(f"{self.ARTIFACT} at {self.address} is read-only (no signing account)")
        return self.tx.transact(fn) if wait else self.tx.send(fn)

    # ------------------------------------------------------------------ events

    def decode_log(self, log: LogReceipt) -> LedgerEvent | None:
        """Decode one log of this contract (None for another contract or unknown topic)."""
        if Web3.to_checksum_address(log["address"]) != self.address or not log["topics"]:
            return None
        name = self._events_by_topic.get(bytes(log["topics"][0]))
        if name is None:
            return None
        data = self.contract.events[name]().process_log(log)
        return LedgerEvent.at(name, _plain(dict(data["args"])), self.address, log)

    def decode_receipt(self, receipt: TxReceipt) -> list[LedgerEvent]:
        return [e for e in (self.decode_log(log) for log in receipt["logs"]) if e is not None]

    def events(
        self,
        from_block: int,
        to_block: int | str = "latest",
        names: Iterable[str] | None = None,
        topic1: bytes | None = None,
    ) -> list[LedgerEvent]:
        """Decoded events of this contract in a block range (one ``eth_getLogs`` call).

        ``names`` restricts to some events; ``topic1`` to one value of the first indexed
        argument (a group id or log id as 32 bytes).
        """
        wanted = set(names) if names is not None else None
        topics0: Sequence[str] | None = None
        if wanted is not None:
            unknown = wanted - set(self._events_by_topic.values())
            if unknown:
                raise ValueError(f"unknown event(s): {', '.join(sorted(unknown))}")
            topics0 = [HexBytes(t).to_0x_hex() for t, n in self._events_by_topic.items() if n in wanted]
        topics: list[Any] = [topics0]
        if topic1 is not None:
            topics.append(HexBytes(topic1).to_0x_hex())
        while topics and topics[-1] is None:
            topics.pop()
        params: dict[str, Any] = {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
        if topics:
            params["topics"] = topics
        logs = self.w3.eth.get_logs(params)  # type: ignore[arg-type]
        return [e for e in (self.decode_log(log) for log in logs) if e is not None]
