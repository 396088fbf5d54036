"""Sending transactions: gas estimation, EIP-1559 fees, local nonces, receipts, revert decoding.

One :class:`Transactor` per signing account. It signs locally (the node never holds the
key), numbers transactions itself (:class:`NonceManager`) so several can be in flight, and
turns every revert (at estimation, in ``eth_call`` or in a mined transaction) into the typed
exception of :mod:`registry.ledger.errors`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import Hash32, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import BlockIdentifier, Nonce, TxParams, TxReceipt, Wei

from registry.ledger.artifacts import load_abi
from registry.ledger.errors import (
    ErrorDecoder,
    InsufficientFunds,
    LedgerError,
    OutOfGas,
    TransactionFailed,
    unreachable,
)

DEFAULT_ERROR_SOURCES = ("ZkIdRegistry", "EvidenceAnchor")


def default_decoder() -> ErrorDecoder:
    return ErrorDecoder(load_abi(name) for name in DEFAULT_ERROR_SOURCES)


def _rpc_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response or {}
    error = response.get("error") if isinstance(response, Mapping) else None
    if isinstance(error, Mapping) and error.get("message"):
        return str(error["message"])
    return str(exc.message)


def revert_data(exc: BaseException) -> bytes | str | None:
    """The raw revert data web3 attached to a ``ContractLogicError`` (or ``None``)."""
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping):
        data = data.get("data")
    return data if isinstance(data, (bytes, str)) else None


class NonceManager:
    """Consecutive nonces for one account, so that transactions need not wait for each other.

    Starts from the node's pending count; :meth:`resync` forgets the local counter (after an
    error, a chain revert or a transaction sent by someone else with the same key).

    ``guard``: when other processes send with the same key (registry replicas on one
    database), a context manager that excludes them (a database lock): :meth:`reserve`
    then holds it from reading the node's pending count until the transaction is handed
    to the node, and never trusts the local counter, so no two processes sign one nonce
    (which would make one transaction fail or replace the other).
    """

    def __init__(self, w3: Web3, address: str, *, guard: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self._w3 = w3
        self._address = Web3.to_checksum_address(address)
        self._lock = threading.Lock()
        self._next: int | None = None
        self.guard = guard

    def next(self) -> int:
        with self._lock:
            if self._next is None:
                self._next = self._w3.eth.get_transaction_count(self._address, "pending")
            nonce = self._next
            self._next += 1
            return nonce

    def resync(self) -> None:
        with self._lock:
            self._next = None

    @contextmanager
    def reserve(self) -> Iterator[int]:
        """The nonce of one transaction, held (this process's lock, and :attr:`guard`)
        until the block ends: it counts as used if the block completes, and the counter is
        forgotten if it raises (the nonce may be unused, or taken by someone else)."""
        with self._lock, (self.guard() if self.guard is not None else nullcontext()):
            if self._next is None or self.guard is not None:
                self._next = self._w3.eth.get_transaction_count(self._address, "pending")
            nonce = self._next
            try:
                yield nonce
            except BaseException:
                self._next = None
                raise
            self._next = nonce + 1


class Transactor:
    """Signs and sends transactions for ``account`` through ``w3``.

    ``confirmations``: how many blocks (the including one counted) a receipt needs before
    :meth:`wait` returns it; 1 = included. ``gas_margin`` multiplies the node's estimate.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        confirmations: int = 1,
        gas_margin: float = 1.2,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.05,
        decoder: ErrorDecoder | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be >= 1")
        if gas_margin < 1.0:
            raise ValueError("gas_margin must be >= 1.0")
        self.w3 = w3
        self.account = account
        self.confirmations = confirmations
        self.gas_margin = gas_margin
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self.decoder = decoder or default_decoder()
        self.nonces = NonceManager(w3, account.address)
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    # ------------------------------------------------------------------ errors

    def _rpc(self, thunk: Any) -> Any:
        """Run a node call, mapping reverts to typed errors and dead nodes to LedgerUnavailable."""
        try:
            return thunk()
        except ContractLogicError as exc:
            raise self.decoder.decode(revert_data(exc)) from None
        except Web3RPCError as exc:
            message = _rpc_message(exc)
            if "insufficient funds" in message.lower():
                raise InsufficientFunds(f"the node refused the request: {message}") from None
            raise TransactionFailed(f"the node refused the request: {message}") from None
        except (ConnectionError, OSError) as exc:
            raise unreachable(self._endpoint, exc) from exc
        except Exception as exc:
            # requests' ConnectionError is an OSError; anything else transport-level lands here.
            if type(exc).__module__.startswith(("requests", "urllib3", "aiohttp")):
                raise unreachable(self._endpoint, exc) from exc
            raise

    @property
    def _endpoint(self) -> str:
        return str(getattr(self.w3.provider, "endpoint_uri", "?"))

    def call(self, fn: ContractFunction, block: BlockIdentifier = "latest") -> Any:
        """``eth_call`` of a contract function from this account, reverts decoded."""
        return self._rpc(lambda: fn.call({"from": self.address}, block_identifier=block))

    # ------------------------------------------------------------------ sending

    def estimate(self, target: ContractFunction | TxParams, value: int = 0) -> int:
        """A gas limit for ``target`` in the current state: the node's ``eth_estimateGas``
        times ``gas_margin`` plus 10k, capped at the block gas limit. A revert found by
        the estimate raises its typed error (like :meth:`call`)."""
        return int(self._build(target, value, None)["gas"])

    def _tip(self) -> int:
        try:
            return int(self.w3.eth.max_priority_fee)
        except Exception:
            return 10**9

    def fee_quote(self) -> tuple[int, int]:
        """(fee per gas the next transaction would pay now: base fee + tip, or the gas
        price on a chain without EIP-1559; that fee's cap as :meth:`send` sets it)."""
        latest = self._rpc(lambda: self.w3.eth.get_block("latest"))
        fees = self._fees(latest)
        if "gasPrice" in fees:
            return fees["gasPrice"], fees["gasPrice"]
        return int(latest["baseFeePerGas"]) + fees["maxPriorityFeePerGas"], fees["maxFeePerGas"]

    def _fees(self, latest: Mapping[str, Any], max_fee: int | None = None) -> dict[str, int]:
        """EIP-1559 fields (room for the base fee to double), or a legacy gas price;
        ``max_fee`` caps what one unit of gas may cost (the tip is lowered to fit)."""
        base = latest.get("baseFeePerGas")
        if base is None:
            price = int(self._rpc(lambda: self.w3.eth.gas_price))
            return {"gasPrice": price if max_fee is None else min(price, max_fee)}
        tip = self._tip()
        cap = 2 * int(base) + tip
        if max_fee is not None:
            cap = min(cap, max_fee)
            tip = min(tip, cap)
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": cap}

    def _build(
        self,
        target: ContractFunction | ContractConstructor | TxParams,
        value: int,
        gas: int | None,
        max_fee: int | None = None,
    ) -> TxParams:
        tx: TxParams = {"from": self.address, "value": Wei(value), "chainId": self.chain_id}
        if isinstance(target, (ContractFunction, ContractConstructor)):
            # Placeholders keep web3 from querying the node; only `to` and `data` are kept.
            dummy: TxParams = {**tx, "gas": 1, "maxFeePerGas": Wei(1), "maxPriorityFeePerGas": Wei(1), "nonce": Nonce(0)}
            built = target.build_transaction(dummy)
            tx["data"] = built["data"]
            if built.get("to"):
                tx["to"] = built["to"]
        else:
            tx.update(target)
        latest = self._rpc(lambda: self.w3.eth.get_block("latest"))
        if gas is None:
            estimate = int(self._rpc(lambda: self.w3.eth.estimate_gas(tx)))
            gas = min(int(estimate * self.gas_margin) + 10_000, int(latest["gasLimit"]))
        tx["gas"] = gas
        tx.update(self._fees(latest, max_fee))  # type: ignore[typeddict-item]
        return tx

    def send(
        self,
        target: ContractFunction | ContractConstructor | TxParams,
        *,
        value: int = 0,
        gas: int | None = None,
        max_fee: int | None = None,
    ) -> HexBytes:
        """Estimate, sign and broadcast; return the transaction hash without waiting.

        ``max_fee``: the most one unit of gas may cost (``maxFeePerGas``, or the gas price).
        A revert found by the gas estimate raises its typed error and uses no nonce.
        """
        tx = self._build(target, value, gas, max_fee)
        with self.nonces.reserve() as nonce:  # an error forgets the counter (see reserve)
            tx["nonce"] = Nonce(nonce)
            signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
            return HexBytes(self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction)))

    def wait(self, tx_hash: HexBytes | HexStr | Hash32, confirmations: int | None = None) -> TxReceipt:
        """The receipt once the transaction has ``confirmations`` blocks; typed error if it reverted.

        If the including block is replaced meanwhile (a reorganisation), waits for the
        transaction's new inclusion.
        """
        needed = self.confirmations if confirmations is None else confirmations
        deadline = time.monotonic() + self.receipt_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransactionFailed(f"transaction {HexBytes(tx_hash).to_0x_hex()} not confirmed in time")
            try:
                receipt = self._rpc(
                    lambda: self.w3.eth.wait_for_transaction_receipt(
                        tx_hash, timeout=remaining, poll_latency=self.poll_interval
                    )
                )
            except TimeExhausted:
                raise TransactionFailed(f"transaction {HexBytes(tx_hash).to_0x_hex()} not mined in time") from None
            if needed > 1:
                target_block = receipt["blockNumber"] + needed - 1
                while self._rpc(lambda: self.w3.eth.block_number) < target_block:
                    if time.monotonic() > deadline:
                        raise TransactionFailed(
                            f"transaction {HexBytes(tx_hash).to_0x_hex()} has fewer than {needed} confirmations"
                        )
                    time.sleep(self.poll_interval)
                try:
                    again = self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
                except TransactionNotFound:
                    continue
                if again["blockHash"] != receipt["blockHash"]:
                    continue
            if receipt["status"] != 1:
                raise self._failure(tx_hash, receipt)
            result: TxReceipt = receipt
            return result

    def _failure(self, tx_hash: HexBytes | HexStr | Hash32, receipt: TxReceipt) -> LedgerError:
        """Replay a failed transaction as a call on its parent state to get the revert reason."""
        shown = HexBytes(tx_hash).to_0x_hex()
        tx = self.w3.eth.get_transaction(tx_hash)
        oog = OutOfGas(f"transaction {shown} failed: out of gas (limit {tx['gas']})", int(tx["gas"]))
        if receipt["gasUsed"] >= tx["gas"]:
            return oog
        call: TxParams = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        parent = receipt["blockNumber"] - 1
        try:
            self.w3.eth.call(call, block_identifier=parent)
        except ContractLogicError as exc:
            data = revert_data(exc)
            empty = data in (None, "", "0x", b"")
            if empty and (receipt["gasUsed"] * 64 >= tx["gas"] * 62 or self._succeeds_with_more_gas(call, parent)):
                # EIP-150 keeps 1/64 of the gas back from each inner call: an out-of-gas in
                # a library call (Poseidon hashing) leaves gasUsed just under the limit and
                # the caller reverts without data. Only a replay with more gas tells.
                return oog
            return self.decoder.decode(data)
        except Exception as exc:
            return TransactionFailed(f"transaction {shown} failed: {exc}")
        return TransactionFailed(f"transaction {shown} failed (its replay succeeds: state changed in its block)")

    def _succeeds_with_more_gas(self, call: TxParams, block: int) -> bool:
        try:
            limit = int(self.w3.eth.get_block(block)["gasLimit"])
            if limit <= int(call.get("gas", 0)):
                return False
            self.w3.eth.call({**call, "gas": limit}, block_identifier=block)
        except Exception:
            return False
        return True

    def transact(
        self,
        target: ContractFunction | ContractConstructor | TxParams,
        *,
        value: int = 0,
        gas: int | None = None,
        confirmations: int | None = None,
    ) -> TxReceipt:
        """Send and wait: the receipt of a successful transaction, or a typed error."""
        return self.wait(self.send(target, value=value, gas=gas), confirmations)

    def transact_many(self, targets: Iterable[ContractFunction | TxParams]) -> list[TxReceipt]:
        """Send all first (consecutive nonces, all in flight), then wait for each in order."""
        hashes = [self.send(t) for t in targets]
        return [self.wait(h) for h in hashes]

    def deploy(self, creation_code: bytes, abi: Sequence[Mapping[str, Any]] = (), args: Sequence[Any] = ()) -> tuple[str, TxReceipt]:
        """Deploy contract code; return (checksum address, receipt)."""
        factory = self.w3.eth.contract(abi=list(abi), bytecode=creation_code)
        receipt = self.transact(factory.constructor(*args))
        address = receipt.get("contractAddress")
        if not address:
            raise TransactionFailed("deployment receipt has no contract address")
        return Web3.to_checksum_address(address), receipt
