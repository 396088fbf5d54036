"""The batcher: anchors the outbox's registrations on the ledger, one ``addMembers``
transaction per batch and group.

A group's pending rows are sent when there are ``batch_size`` of them, when there are at
least ``batch_min_size`` (the k-anonymity floor of a batch) and the group has waited
``batch_interval`` seconds, or when it has waited ``batch_max_wait`` seconds whatever its
size (so a lone registration is not held forever). A batch's commitments go on chain in the
order of their outbox ids, which are random per request (consecutive within one): the leaf
order keeps a client's own order within its request and says nothing about the order in
which requests arrived (docs/privacy.md). Each batch is

1. estimated with ``eth_estimateGas`` of ``addMembers`` (the cost of inserting into a
   LeanIMT grows with the tree's depth, so no fixed cost per member fits every group; the
   estimate also finds a batch that would revert: the contract rejects a whole batch if
   one commitment is already a member, ``LeafAlreadyExists``, and members already on
   chain are then found with ``hasMember`` and taken out, never sent twice). A batch
   whose estimate does not fit in a block is split;
2. counted (``attempts``) in the outbox *before* the broadcast, so that a crash between
   broadcast and bookkeeping is visible at restart;
3. broadcast with the estimate plus a margin (raised after an out-of-gas revert);
4. marked ``sent`` with its hash, ``included`` once its receipt is on the chain and
   ``final`` with the required confirmations; a transaction that vanished (reorganisation,
   eviction, a ledger restored from an older state) or reverted for a curable reason
   (out of gas, ...) puts its rows back to ``pending``, and the group waits a growing
   delay before its next try; only a permanent refusal (not our group, no such group)
   marks rows ``failed``, with a reason code. An accepted registration is never dropped
   because of a number of attempts.

Rollbacks: the index records the lowest block any rollback removed (in the rollback's
own transaction); each step reopens the rows recorded as mined from there on, and they
are looked up again by their transaction. At start, rows recorded above the chain's head
are reopened too (a ledger restored from an older state while the registry was down).

:meth:`Batcher.reconcile` runs at start and after every error: it waits for our in-flight
transactions, settles ``sent`` rows from their receipts and checks every ``pending`` row
that was ever handed to the ledger against the chain, so that after a crash nothing is
lost and nothing is added twice. Failures are counted by kind (:data:`FAILURE_KINDS`),
logged without values, and the current one is reported by ``/v1/health``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from eth_abi.abi import encode as abi_encode
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxParams
from web3.exceptions import TransactionNotFound

from registry._utils.backoff import Backoff, backoff_delay
from registry._utils.logs import exc_type
from registry.service.index import ChainIndex
from registry.service.indexer import node_call
from registry.ledger.errors import (
    AccessDenied,
    ContractRevert,
    InsufficientFunds,
    InvalidLeaf,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    OutOfGas,
    TransactionFailed,
)
from registry.ledger.registry_contract import RegistryContract
from registry.service.outbox import Outbox, OutboxRow

log = logging.getLogger("registry.service.batcher")

#: Upper bound of the gas of one member (measured ~55.1k per member in large batches,
#: more for small batches into deep trees): only used to size a batch before its
#: estimate, which decides.
GAS_PER_MEMBER = 70_000
GAS_BASE = 150_000
#: Multiplier of the node's estimate after out-of-gas reverts (x1.5 per revert, capped).
MAX_GAS_BOOST = 4.0
#: Seconds a group waits after a curable failure: doubled per failure, capped.
RETRY_BASE = 1.0
RETRY_MAX = 300.0
_HAS_MEMBER_BATCH = 500
#: Seconds between two looks at the fee or the budget while paused.
PAUSE_RECHECK = 1.0

#: Kinds of failure counted in :attr:`BatcherStats.failures` and shown by health.
FAILURE_KINDS = (
    "ledger_unavailable",  # the node cannot be reached
    "fee_above_ceiling",  # paused: the fee per gas is above max_fee_per_gas
    "budget_exhausted",  # paused: the hourly spending budget is used up
    "insufficient_funds",  # the operator account cannot pay for gas
    "out_of_gas",  # a batch reverted out of gas (resent with more gas, or split)
    "reverted",  # a batch reverted for another reason (resent after a delay)
    "node_refused",  # the node refused a request (nonce, fee, size, ...)
    "refused",  # the contract refuses the registrations for good (rows failed)
    "storage",  # the outbox could not be read or written
    "internal",  # anything else (a bug): see the log line's type
)


def failure_kind(exc: BaseException) -> str:
    """The :data:`FAILURE_KINDS` entry of an exception."""
    if isinstance(exc, LedgerUnavailable):
        return "ledger_unavailable"
    if isinstance(exc, InsufficientFunds):
        return "insufficient_funds"
    if isinstance(exc, OutOfGas):
        return "out_of_gas"
    if isinstance(exc, ContractRevert):
        return "reverted"
    if isinstance(exc, LedgerError):
        return "node_refused"
    if isinstance(exc, sqlite3.Error):
        return "storage"
    return "internal"


def refusal_code(exc: LedgerError) -> str | None:
    """The reason code of a permanent refusal (rows are then ``failed``), else None."""
    if isinstance(exc, InvalidLeaf):
        return None  # e.g. LeafAlreadyExists: handled by taking members on chain out
    if isinstance(exc, AccessDenied):
        return "forbidden"
    if isinstance(exc, NotFound):
        return "unknown_group"
    return None


#: ``addMembers(uint256,uint256[])`` of ZkIdRegistry (its 4-byte selector).
ADD_MEMBERS_SELECTOR = bytes(Web3.keccak(text="addMembers(uint256,uint256[])")[:4])


def add_members_tx(contract: str, group_id: int, commitments: Sequence[int]) -> TxParams:
    """The ``to`` and ``data`` of an ``addMembers`` call, ABI-encoded by eth_abi at once.
    web3's contract-function path normalises each array element through several Python
    layers: for a batch of hundreds of members, built twice per batch (estimate, send), it
    was the batcher's largest CPU cost (BENCHMARKS.md, "Registry service"). The same bytes as
    ``contract.functions.addMembers(group_id, commitments)`` (a test compares them)."""
    data = ADD_MEMBERS_SELECTOR + abi_encode(["uint256", "uint256[]"], [group_id, list(commitments)])
    return {"to": Web3.to_checksum_address(contract), "data": HexStr(HexBytes(data).to_0x_hex())}


@dataclass
class BatcherStats:
    batches_sent: int = 0
    members_sent: int = 0
    included: int = 0
    requeued: int = 0
    reopened: int = 0
    failed: int = 0
    skipped_on_chain: int = 0
    splits: int = 0
    reconciles: int = 0
    errors: int = 0
    last_error: str | None = None
    #: failures by kind since start (a Prometheus counter)
    failures: Counter[str] = field(default_factory=Counter)
    #: the kind of the latest failure, cleared by a step that goes through
    problem: str | None = None
    problem_since: float | None = None
    #: why sending is paused now (``fee_above_ceiling``, ``budget_exhausted``), else None
    paused: str | None = None


class Batcher:
    """Sends the outbox's pending registrations with ``registry`` (a signing contract
    wrapper, or a factory building one, called again until it succeeds)."""

    def __init__(
        self,
        outbox: Outbox,
        registry: RegistryContract | Callable[[], RegistryContract],
        *,
        batch_size: int = 500,
        batch_interval: float = 2.0,
        batch_min_size: int = 1,
        batch_max_wait: float | None = None,
        confirmations: int = 2,
        index: ChainIndex | None = None,
        clock: Callable[[], float] = time.time,
        max_backoff: float = 30.0,
        idle_wait: float = 0.1,
        inflight_wait: float = 30.0,
        max_fee_per_gas: int | None = None,
        spend_per_hour: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_interval <= 0:
            raise ValueError("batch_interval must be positive")
        self.outbox = outbox
        self._registry = registry if isinstance(registry, RegistryContract) else None
        self._factory = None if isinstance(registry, RegistryContract) else registry
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        if batch_min_size < 1:
            raise ValueError("batch_min_size must be at least 1")
        #: fewest registrations per batch (the k-anonymity floor) until ``batch_max_wait``
        self.batch_min_size = batch_min_size
        #: seconds after which a group's batch goes whatever its size (default: batch_interval)
        self.batch_max_wait = batch_interval if batch_max_wait is None else max(batch_max_wait, batch_interval)
        self.confirmations = max(confirmations, 1)
        self.index = index
        self.clock = clock
        self.max_backoff = max_backoff
        self.idle_wait = idle_wait
        self.inflight_wait = inflight_wait
        self.stats = BatcherStats()
        #: never pay more per unit of gas (wei); None = no ceiling
        self.max_fee_per_gas = max_fee_per_gas
        #: never commit more wei per sliding hour; None = no budget
        self.spend_per_hour = spend_per_hour
        self.needs_reconcile = True
        self.gas_boost = 1.0
        self._gas_limit: int | None = None
        #: per group: most members per batch (halved when a batch does not fit a block)
        self._group_capacity: dict[int, int] = {}
        #: per group: (curable failures in a row, monotonic time before which it waits)
        self._retry: dict[int, tuple[int, float]] = {}
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    @property
    def registry(self) -> RegistryContract:
        if self._registry is None:
            assert self._factory is not None
            self._registry = self._factory()
        if self._registry.tx is None:
            raise LedgerError("the batcher needs a signing account")
        return self._registry

    def _head(self) -> int:
        w3 = self.registry.w3
        return node_call(lambda: int(w3.eth.block_number))

    def _block_gas_limit(self) -> int:
        if self._gas_limit is None:
            w3 = self.registry.w3
            self._gas_limit = int(node_call(lambda: w3.eth.get_block("latest"))["gasLimit"])
        return self._gas_limit

    def _gas_target(self) -> int:
        """Most gas one batch may use: the block's EIP-1559 target (half its limit). A
        block filled above the target raises the next base fee by up to 12.5%: batches
        that fill block after block drive the fee up until the operator cannot pay."""
        return self._block_gas_limit() // 2

    def _capacity(self, group_id: int | None = None) -> int:
        """Most members per transaction: ``batch_size``, what fits in the gas target at
        :data:`GAS_PER_MEMBER`, and the group's own limit after a split."""
        fits = (self._gas_target() - GAS_BASE) // GAS_PER_MEMBER
        capacity = max(1, min(self.batch_size, fits))
        if group_id is not None:
            capacity = min(capacity, self._group_capacity.get(group_id, capacity))
        return capacity

    def on_chain(self, group_id: int, commitments: Sequence[int]) -> set[int]:
        """The commitments that are live members of the group on chain (``hasMember``,
        in JSON-RPC batches)."""
        reg = self.registry
        found: set[int] = set()
        for i in range(0, len(commitments), _HAS_MEMBER_BATCH):
            part = list(commitments[i : i + _HAS_MEMBER_BATCH])

            def ask(part: list[int] = part) -> list[object]:
                with reg.w3.batch_requests() as batch:
                    for c in part:
                        batch.add(reg.contract.functions.hasMember(group_id, c))
                    return list(batch.execute())

            for c, present in zip(part, node_call(ask)):
                if present:
                    found.add(c)
        return found

    def _present(self, group_id: int, commitments: Sequence[int]) -> set[int]:
        """Like :meth:`on_chain`, with a cheap ``eth_call`` of ``addMembers`` per block-sized
        slice first: it succeeds in the usual case, where none is on chain."""
        reg = self.registry
        assert reg.tx is not None
        step = self._capacity(group_id)
        found: set[int] = set()
        for i in range(0, len(commitments), step):
            part = list(commitments[i : i + step])
            try:
                reg.tx.call(reg.contract.functions.addMembers(group_id, part))
            except (ContractRevert, TransactionFailed):
                found |= self.on_chain(group_id, part)
        return found

    def _index_tx(self, group_id: int, commitment: int) -> tuple[str | None, int | None]:
        if self.index is None:
            return None, None
        rec = self.index.member(group_id, commitment)
        if rec is None:
            rec = self.index.last_leaf_of(group_id, commitment)  # added, then removed: still added once
        return (rec.tx_hash, rec.block_number) if rec is not None else (None, None)

    def _final(self, block: int, head: int) -> bool:
        return head - block + 1 >= self.confirmations

    # ------------------------------------------------------------------ failures

    def _note_failure(self, exc: BaseException, where: str) -> str:
        """Count, remember and log (type and kind only: texts may quote commitments)."""
        kind = failure_kind(exc)
        self.stats.failures[kind] += 1
        if self.stats.problem != kind:
            self.stats.problem_since = self.clock()
        self.stats.problem = kind
        self.stats.errors += 1
        self.stats.last_error = f"{kind}: {type(exc).__name__}"
        level = logging.WARNING if kind in ("ledger_unavailable", "out_of_gas") else logging.ERROR
        log.log(level, "batcher: %s while %s (%s)", kind, where, exc_type(exc))
        return kind

    def _defer(self, group_id: int) -> None:
        """A curable failure of this group's batch: wait longer before the next try."""
        failures, _ = self._retry.get(group_id, (0, 0.0))
        delay = backoff_delay(failures + 1, RETRY_BASE, RETRY_MAX, jitter=True)
        self._retry[group_id] = (failures + 1, time.monotonic() + delay)

    def _succeeded(self, group_id: int) -> None:
        """A batch of the group is on chain: no more waiting, and a split batch size grows back."""
        self._retry.pop(group_id, None)
        capacity = self._group_capacity.get(group_id)
        if capacity is not None:
            if capacity * 2 >= self.batch_size:
                del self._group_capacity[group_id]
            else:
                self._group_capacity[group_id] = capacity * 2

    def _deferred(self, group_id: int) -> bool:
        entry = self._retry.get(group_id)
        return entry is not None and time.monotonic() < entry[1]

    # ------------------------------------------------------------------ reconciliation

    def _wait_inflight(self, timeout: float | None = None) -> bool:
        """Wait until none of our transactions is still waiting in the node's pool
        (at most ``timeout`` seconds, default ``inflight_wait``); False if some still are."""
        reg = self.registry
        assert reg.tx is not None
        address = Web3.to_checksum_address(reg.tx.address)
        deadline = time.monotonic() + (self.inflight_wait if timeout is None else timeout)
        while True:
            pending = node_call(lambda: reg.w3.eth.get_transaction_count(address, "pending"))
            latest = node_call(lambda: reg.w3.eth.get_transaction_count(address, "latest"))
            if pending <= latest:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05 if timeout is not None else 0.2)

    def wait_sent(self, timeout: float = 5.0) -> bool:
        """Wait (briefly) for the transactions just sent to be mined: a node may accept a
        transaction a moment before it mines it, even with automine."""
        return self._wait_inflight(timeout)

    def recheck_rollbacks(self) -> int:
        """Reopen the rows that a rollback recorded by the index may have taken off the
        chain; returns how many were reopened."""
        if self.index is None:
            return 0
        mark = self.index.rolled_back_from()
        if mark is None:
            return 0
        reopened = self.outbox.reopen_from(mark)
        self.index.clear_rollback(mark)
        if reopened:
            self.stats.reopened += reopened
            log.warning("the chain rolled back: %d registration(s) are checked against it again", reopened)
        return reopened

    def reconcile(self) -> dict[str, int]:
        """Make the outbox agree with the chain (see the module docstring); returns counts."""
        with self.lock:
            self.stats.reconciles += 1
            if not self._wait_inflight():
                self.needs_reconcile = True
                return {"settled": 0, "found_on_chain": 0, "waiting": 1}
            reg = self.registry
            assert reg.tx is not None
            reg.tx.nonces.resync()
            # Recorded in blocks the chain does not have (restored from an older state).
            reopened = self.outbox.reopen_from(self._head() + 1) + self.recheck_rollbacks()
            self.stats.reopened += reopened
            settled = self._settle()
            found = 0
            by_group: dict[int, list[OutboxRow]] = defaultdict(list)
            for row in self.outbox.attempted_pending():
                by_group[row.group_id].append(row)
            for group_id, rows in by_group.items():
                present = self._present(group_id, [r.commitment for r in rows])
                for row in rows:
                    if row.commitment in present:
                        tx_hash, _ = self._index_tx(group_id, row.commitment)
                        self.outbox.mark_sent([row.id], tx_hash)
                        found += 1
            self.needs_reconcile = False
            return {"settled": settled, "found_on_chain": found, "waiting": 0, "reopened": reopened}

    # ------------------------------------------------------------------ settling

    def settle(self) -> int:
        """Advance ``sent`` and ``included`` rows from the chain; returns how many changed."""
        with self.lock:
            self.recheck_rollbacks()
            return self._settle()

    def _settle(self) -> int:
        rows = self.outbox.in_flight()
        if not rows:
            return 0
        head = self._head()
        changed = 0
        by_tx: dict[str | None, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_tx[row.tx_hash].append(row)
        for tx_hash, tx_rows in by_tx.items():
            if tx_hash is None:
                changed += self._settle_untracked(tx_rows, head)
            else:
                changed += self._settle_tx(tx_hash, tx_rows, head)
        return changed

    def _settle_untracked(self, rows: list[OutboxRow], head: int) -> int:
        """Rows found on chain without knowing the transaction (after a crash)."""
        changed = 0
        by_group: dict[int, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_group[row.group_id].append(row)
        for group_id, group_rows in by_group.items():
            present = self.on_chain(group_id, [r.commitment for r in group_rows])
            for row in group_rows:
                tx_hash, block = self._index_tx(group_id, row.commitment)
                if row.commitment not in present and tx_hash is None:
                    self.outbox.mark_pending([row.id], "no longer on chain")
                    self.stats.requeued += 1
                    changed += 1
                    continue
                if tx_hash is not None and block is not None:
                    final = self._final(block, head)
                    self.outbox.mark_included([row.id], block, tx_hash, final=final)
                    self.stats.included += 1 if final else 0
                    changed += 1
                elif self.index is None:
                    self.outbox.mark_included([row.id], None)
                    self.stats.included += 1
                    changed += 1
        return changed

    def _settle_tx(self, tx_hash: str, rows: list[OutboxRow], head: int) -> int:
        reg = self.registry
        assert reg.tx is not None
        ids = [r.id for r in rows]
        try:
            receipt = node_call(lambda: reg.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except TransactionNotFound:
            receipt = None
        if receipt is None:
            try:
                node_call(lambda: reg.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
                if any(r.state == "included" for r in rows):
                    self.outbox.mark_sent(ids, tx_hash)  # its block is gone, it waits again
                    return len(ids)
                return 0  # still waiting in the pool
            except TransactionNotFound:
                # Gone: its block was reorganised away, the node dropped it, or the ledger
                # was restored from an older state. Its nonce is free again, and its rows go
                # back to the queue (checked against the chain before they are sent again).
                reg.tx.nonces.resync()
                self.outbox.mark_pending(ids, "transaction dropped from the chain")
                self.stats.requeued += len(ids)
                return len(ids)
        price = receipt.get("effectiveGasPrice")
        if price is not None:
            self.outbox.record_spend(tx_hash, int(receipt["gasUsed"]) * int(price))
        if receipt["status"] == 1:
            block = int(receipt["blockNumber"])
            final = self._final(block, max(head, block))  # mined since the head was read
            if final or any(r.state != "included" or r.block_number != block for r in rows):
                self.outbox.mark_included(ids, block, final=final)
                self.stats.included += len(ids) if final else 0
                self._succeeded(rows[0].group_id)
                return len(ids)
            return 0
        try:
            reg.tx.wait(HexBytes(tx_hash), confirmations=1)
            error: LedgerError = TransactionFailed(f"transaction {tx_hash} reverted")
        except LedgerError as exc:
            error = exc
        return self._failed_batch(rows, error)

    def _failed_batch(self, rows: list[OutboxRow], error: LedgerError) -> int:
        """A batch the ledger refused: failed for good with a reason code if no retry can
        help, else back to pending (more gas after an out-of-gas revert; the group waits)."""
        ids = [r.id for r in rows]
        group_id = rows[0].group_id
        kind = self._note_failure(error, f"settling a batch of {len(ids)}")
        code = refusal_code(error)
        if code is not None:
            self.outbox.mark_failed(ids, f"{code}: {type(error).__name__}")
            self.stats.failed += len(ids)
            self.stats.failures["refused"] += 1
            log.error("batch of %d registration(s) refused for good: %s", len(ids), code)
            return len(ids)
        if kind == "out_of_gas":
            self.gas_boost = min(self.gas_boost * 1.5, MAX_GAS_BOOST)
        self.outbox.mark_pending(ids, f"{kind}: {type(error).__name__}")
        self.stats.requeued += len(ids)
        self._defer(group_id)
        return len(ids)

    # ------------------------------------------------------------------ the operator's money

    _last_fee_cap = 0
    _pause_checked = 0.0
    _stop: threading.Event | None = None
    _new_pause: str | None = None

    def _pause_reason(self, gas: int) -> str | None:
        """Why a batch of ``gas`` must not be sent now, or None: the fee per gas above the
        ceiling, or its worst-case cost over the hourly budget."""
        reg = self.registry
        assert reg.tx is not None
        fee, cap = reg.tx.fee_quote()
        if self.max_fee_per_gas is not None:
            if fee > self.max_fee_per_gas:
                return "fee_above_ceiling"
            cap = min(cap, self.max_fee_per_gas)
        self._last_fee_cap = cap
        if self.spend_per_hour is not None:
            now = self.clock()
            self.outbox.purge_spend(now - 7200)
            if self.outbox.spent_since(now - 3600) + gas * cap > self.spend_per_hour:
                return "budget_exhausted"
        return None

    def _pause(self, reason: str) -> None:
        """Hold every send this pass (decided in :meth:`send_due`, published at its end)."""
        if self._new_pause is None:
            self._new_pause = reason

    def send_due(self, force: bool = False) -> int:
        """Send every due batch (all pending rows if ``force``); returns members sent."""
        with self.lock:
            was_paused = self.stats.paused
            if was_paused is not None and time.monotonic() < self._pause_checked + PAUSE_RECHECK:
                return 0
            self._pause_checked = time.monotonic()
            self._new_pause = None
            try:
                return self._send_due(force)
            finally:
                # Published once decided: health never sees a pause flicker off mid-pass.
                paused = self.stats.paused = self._new_pause
                if paused is not None and paused != was_paused:
                    self.stats.failures[paused] += 1
                    log.warning("batcher paused: %s (registrations are still accepted)", paused)
                elif was_paused is not None and paused is None:
                    log.info("batcher resumed after %s", was_paused)

    def _send_due(self, force: bool) -> int:
        now = self.clock()
        total = 0
        if self.max_fee_per_gas is not None and self.outbox.pending_groups():
            assert self.registry.tx is not None
            if self.registry.tx.fee_quote()[0] > self.max_fee_per_gas:
                self._pause("fee_above_ceiling")
                return 0
        for group_id, count, oldest in self.outbox.pending_groups():
            if not force and not self._due(count, now - oldest):
                continue
            if not force and self._deferred(group_id):
                continue
            while True:
                if self._stop is not None and self._stop.is_set():
                    return total  # stopping: the rest waits in the outbox for the next start
                capacity = self._capacity(group_id)
                rows = self.outbox.take_pending(group_id, capacity)
                if not rows:
                    break
                full = len(rows) >= min(self.batch_size, capacity)
                if not (force or full or self._due(len(rows), now - oldest)):
                    break
                sent = self._send_batch(group_id, rows)
                if sent < 0:
                    break  # this group waits (deferred or paused); the others go on
                total += sent
            if self._new_pause is not None:
                break  # a pause holds for every group
        return total

    def _split(self, group_id: int, size: int) -> bool:
        """Halve the group's batch size after a batch that does not fit; False at 1."""
        if size <= 1:
            return False
        self._group_capacity[group_id] = max(1, size // 2)
        self.stats.splits += 1
        log.warning("batcher: a batch of %d does not fit in a block, splitting", size)
        return True

    def _due(self, count: int, waited: float) -> bool:
        """Whether ``count`` pending registrations of a group waiting ``waited`` seconds make a batch."""
        if count >= self.batch_size or waited >= self.batch_max_wait:
            return True
        return count >= self.batch_min_size and waited >= self.batch_interval

    def _send_batch(self, group_id: int, rows: list[OutboxRow]) -> int:
        """Send one batch; returns the members sent, or -1 if the group must wait."""
        reg = self.registry
        assert reg.tx is not None
        # In id order: random across requests, so the leaf order on chain is independent of
        # the order in which requests arrived.
        rows = sorted(rows, key=lambda r: r.id)
        commitments = [r.commitment for r in rows]
        fn = add_members_tx(reg.contract.address, group_id, commitments)
        # While paused, a rough lower bound of the cost is enough to keep waiting: no
        # estimate (an execution of the whole batch) every second.
        pause = self._pause_reason(GAS_BASE + 50_000 * len(rows))
        if pause is not None:
            self._pause(pause)
            return -1
        try:
            # The estimate executes the batch: it also finds members already on chain
            # (LeafAlreadyExists), which are then looked up one by one and taken out.
            estimate = reg.tx.estimate(fn)
        except ContractRevert as exc:
            if refusal_code(exc) is not None:
                self._failed_batch(rows, exc)
                return 0
            present = self.on_chain(group_id, commitments) if isinstance(exc, InvalidLeaf) else set()
            if present:
                for row in rows:
                    if row.commitment in present:
                        tx_hash, _ = self._index_tx(group_id, row.commitment)
                        self.outbox.mark_sent([row.id], tx_hash)
                        self.stats.skipped_on_chain += 1
                return 0  # the rest goes in the next batch
            self._note_failure(exc, "estimating a batch")
            self._defer(group_id)
            return -1
        except TransactionFailed as exc:
            # The node's estimate failed without a revert: typically more gas than a block
            # holds (a batch too large for this tree's depth).
            if not isinstance(exc, InsufficientFunds) and self._split(group_id, len(rows)):
                return 0
            raise
        block_limit = self._block_gas_limit()
        gas = min(int(estimate * self.gas_boost), block_limit)
        # Sized for the gas target by capacity(); split only what would not fit a block.
        if estimate > block_limit * 9 // 10 and self._split(group_id, len(rows)):
            return 0
        pause = self._pause_reason(gas)
        if pause is not None:
            self._pause(pause)
            return -1
        ids = [r.id for r in rows]
        self.outbox.mark_attempt(ids)
        try:
            sent_hash = reg.tx.send(fn, gas=gas, max_fee=self.max_fee_per_gas)
        except LedgerError:
            # Maybe broadcast, maybe not: the rows stay pending with attempts > 0 and the
            # reconciliation checks them against the chain before anything is resent.
            self.needs_reconcile = True
            raise
        shown = HexBytes(sent_hash).to_0x_hex()
        self.outbox.record_spend(shown, gas * self._last_fee_cap)  # the most it can cost
        self.outbox.mark_sent(ids, shown)
        self.stats.batches_sent += 1
        self.stats.members_sent += len(ids)
        log.info("sent a batch of %d registration(s) for group %d", len(ids), group_id)
        return len(ids)

    # ------------------------------------------------------------------ loop

    def step(self, force: bool = False) -> int:
        """One pass: reconcile if needed, settle sent rows, send due batches."""
        if self.needs_reconcile:
            self.reconcile()
        self.settle()
        return self.send_due(force)

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; failures back off exponentially (with jitter), are
        counted by kind and reported by health until a step goes through."""
        backoff = Backoff(0.25, self.max_backoff, jitter=True)
        self._stop = stop  # checked between batches: a stop does not wait for a whole backlog
        while not stop.is_set():
            try:
                self.step()
                backoff.succeeded()
                if not self._retry_pending():
                    self.stats.problem = None
                    self.stats.problem_since = None
                    self.stats.last_error = None
            except Exception as exc:  # the thread must survive anything; health reports it
                self._note_failure(exc, "running a step")
                self.needs_reconcile = True
                stop.wait(backoff.failed())
                continue
            stop.wait(self.idle_wait)

    def _retry_pending(self) -> bool:
        """Some group still waits after a curable failure (its problem is not over)."""
        now = time.monotonic()
        self._retry = {g: v for g, v in self._retry.items() if v[1] > now - RETRY_MAX}
        return any(self.outbox.take_pending(g, 1) for g in self._retry)
