"""The batcher: anchors the outbox's registrations on the ledger, one ``addMembers``
transaction per batch and group.

A group's pending rows are sent when there are ``batch_size`` of them or when the oldest
has waited ``batch_interval`` seconds. Each batch is

1. checked with an ``eth_call`` of ``addMembers`` (the contract rejects a whole batch if one
   commitment is already a member, ``LeafAlreadyExists``; members already on chain are then
   found with ``hasMember`` and taken out of the batch, never sent twice);
2. counted (``attempts``) in the outbox *before* the broadcast, so that a crash between
   broadcast and bookkeeping is visible at restart;
3. broadcast with a gas limit from the measured cost per member (capped so a batch fits in
   a block: larger batches are split), nonces from the transactor's nonce manager;
4. marked ``sent`` with its hash, then ``included`` once its receipt has the required
   confirmations; a transaction that vanished (reorganisation, eviction) or reverted for a
   curable reason puts its rows back to ``pending``; a permanent refusal (not our group)
   marks them ``failed``.

:meth:`Batcher.reconcile` runs at start and after every error: it waits for our in-flight
transactions, settles ``sent`` rows from their receipts and checks every ``pending`` row
that was ever handed to the ledger against the chain, so that after a crash nothing is
lost and nothing is added twice. Ledger errors are retried with exponential backoff;
registrations keep being accepted meanwhile (they only touch the outbox).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from registry.index import ChainIndex
from registry.indexer import node_call
from registry.ledger.errors import (
    AccessDenied,
    ContractRevert,
    InvalidLeaf,
    LedgerError,
    LedgerUnavailable,
    NotFound,
    TransactionFailed,
)
from registry.ledger.registry_contract import RegistryContract
from registry.outbox import Outbox, OutboxRow

log = logging.getLogger("registry.batcher")

#: Gas of ``addMembers``: measured ~55.1k per member on Anvil (PoseidonT3 hashing and the
#: lean-imt storage writes); the limit leaves ~25% margin, an out-of-gas revert switches
#: to ``eth_estimateGas`` (slow on large batches, hence not the default).
GAS_PER_MEMBER = 70_000
GAS_BASE = 150_000
MAX_ATTEMPTS = 8
_HAS_MEMBER_BATCH = 500


@dataclass
class BatcherStats:
    batches_sent: int = 0
    members_sent: int = 0
    included: int = 0
    requeued: int = 0
    failed: int = 0
    skipped_on_chain: int = 0
    reconciles: int = 0
    errors: int = 0
    last_error: str | None = None


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
        confirmations: int = 2,
        index: ChainIndex | None = None,
        clock: Callable[[], float] = time.time,
        max_backoff: float = 30.0,
        idle_wait: float = 0.1,
        inflight_wait: float = 30.0,
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
        self.confirmations = max(confirmations, 1)
        self.index = index
        self.clock = clock
        self.max_backoff = max_backoff
        self.idle_wait = idle_wait
        self.inflight_wait = inflight_wait
        self.stats = BatcherStats()
        self.needs_reconcile = True
        self.use_estimate = False
        self._gas_limit: int | None = None
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

    def _capacity(self) -> int:
        """Most members per transaction: ``batch_size``, or what fits in 90% of a block."""
        if self._gas_limit is None:
            w3 = self.registry.w3
            self._gas_limit = int(node_call(lambda: w3.eth.get_block("latest"))["gasLimit"])
        fits = (self._gas_limit * 9 // 10 - GAS_BASE) // GAS_PER_MEMBER
        return max(1, min(self.batch_size, fits))

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
        step = self._capacity()
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
        return (rec.tx_hash, rec.block_number) if rec is not None else (None, None)

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
            return {"settled": settled, "found_on_chain": found, "waiting": 0}

    # ------------------------------------------------------------------ settling

    def settle(self) -> int:
        """Advance ``sent`` rows from the chain; returns how many changed state."""
        with self.lock:
            return self._settle()

    def _settle(self) -> int:
        sent = self.outbox.rows("sent")
        if not sent:
            return 0
        head = self._head()
        changed = 0
        by_tx: dict[str | None, list[OutboxRow]] = defaultdict(list)
        for row in sent:
            by_tx[row.tx_hash].append(row)
        for tx_hash, rows in by_tx.items():
            if tx_hash is None:
                changed += self._settle_untracked(rows, head)
            else:
                changed += self._settle_tx(tx_hash, rows, head)
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
                if row.commitment not in present:
                    self.outbox.mark_pending([row.id], "no longer on chain")
                    self.stats.requeued += 1
                    changed += 1
                    continue
                tx_hash, block = self._index_tx(group_id, row.commitment)
                if tx_hash is not None and block is not None and head - block + 1 >= self.confirmations:
                    self.outbox.mark_included([row.id], block, tx_hash)
                    self.stats.included += 1
                    changed += 1
                elif tx_hash is not None:
                    self.outbox.mark_sent([row.id], tx_hash)  # tracked by its receipt from now on
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
                return 0  # still waiting in the pool
            except TransactionNotFound:
                # Gone: its block was reorganised away or the node dropped it. Its nonce
                # is free again, and its rows go back to the queue.
                reg.tx.nonces.resync()
                self.outbox.mark_pending(ids, "transaction dropped from the chain")
                self.stats.requeued += len(ids)
                return len(ids)
        if receipt["status"] == 1:
            block = int(receipt["blockNumber"])
            if head - block + 1 >= self.confirmations:
                self.outbox.mark_included(ids, block)
                self.stats.included += len(ids)
                return len(ids)
            return 0
        try:
            reg.tx.wait(HexBytes(tx_hash), confirmations=1)
            error: LedgerError = TransactionFailed(f"transaction {tx_hash} reverted")
        except LedgerError as exc:
            error = exc
        return self._failed_batch(rows, error)

    def _failed_batch(self, rows: list[OutboxRow], error: LedgerError) -> int:
        ids = [r.id for r in rows]
        text = f"{type(error).__name__}: {error}"
        if isinstance(error, (AccessDenied, NotFound)) and not isinstance(error, InvalidLeaf):
            # Not our group, or no such group: no retry can help.
            self.outbox.mark_failed(ids, text)
            self.stats.failed += len(ids)
            log.error("batch of %d registration(s) refused for good: %s", len(ids), type(error).__name__)
            return len(ids)
        if isinstance(error, TransactionFailed) and "out of gas" in str(error):
            self.use_estimate = True
        exhausted = [r.id for r in rows if r.attempts >= MAX_ATTEMPTS]
        retry = [r.id for r in rows if r.attempts < MAX_ATTEMPTS]
        if exhausted:
            self.outbox.mark_failed(exhausted, text)
            self.stats.failed += len(exhausted)
        if retry:
            self.outbox.mark_pending(retry, text)
            self.stats.requeued += len(retry)
        return len(ids)

    # ------------------------------------------------------------------ sending

    def send_due(self, force: bool = False) -> int:
        """Send every due batch (all pending rows if ``force``); returns members sent."""
        with self.lock:
            now = self.clock()
            total = 0
            for group_id, count, oldest in self.outbox.pending_groups():
                if not force and count < self.batch_size and now - oldest < self.batch_interval:
                    continue
                capacity = self._capacity()
                while True:
                    rows = self.outbox.take_pending(group_id, capacity)
                    if not rows:
                        break
                    full = len(rows) >= min(self.batch_size, capacity)
                    if not (force or full or now - rows[0].created_at >= self.batch_interval):
                        break
                    total += self._send_batch(group_id, rows)
            return total

    def _send_batch(self, group_id: int, rows: list[OutboxRow]) -> int:
        reg = self.registry
        assert reg.tx is not None
        present = self._present(group_id, [r.commitment for r in rows])
        if present:
            for row in rows:
                if row.commitment in present:
                    tx_hash, _ = self._index_tx(group_id, row.commitment)
                    self.outbox.mark_sent([row.id], tx_hash)
                    self.stats.skipped_on_chain += 1
            rows = [r for r in rows if r.commitment not in present]
            if not rows:
                return 0
        commitments = [r.commitment for r in rows]
        fn = reg.contract.functions.addMembers(group_id, commitments)
        try:
            reg.tx.call(fn)
        except ContractRevert as exc:
            if isinstance(exc, (AccessDenied, NotFound)) and not isinstance(exc, InvalidLeaf):
                self._failed_batch(rows, exc)
                return 0
            # e.g. a member added by someone else since the check: retry after a backoff.
            raise
        gas = None if self.use_estimate else min(GAS_BASE + GAS_PER_MEMBER * len(rows), self._gas_limit or 30_000_000)
        ids = [r.id for r in rows]
        self.outbox.mark_attempt(ids)
        try:
            sent_hash = reg.tx.send(fn, gas=gas)
        except LedgerError:
            # Maybe broadcast, maybe not: the rows stay pending with attempts > 0 and the
            # reconciliation checks them against the chain before anything is resent.
            self.needs_reconcile = True
            raise
        self.outbox.mark_sent(ids, HexBytes(sent_hash).to_0x_hex())
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
        """Work until ``stop`` is set; ledger errors back off exponentially (with jitter)."""
        backoff = 0.0
        while not stop.is_set():
            try:
                self.step()
                backoff = 0.0
                self.stats.last_error = None
            except Exception as exc:  # the thread must survive anything; health reports it
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.needs_reconcile = True
                backoff = min(max(backoff * 2, 0.25), self.max_backoff)
                if isinstance(exc, LedgerUnavailable):
                    log.warning("ledger unreachable, batcher retrying in %.1f s", backoff)
                else:
                    # the type only: an error's text may quote commitments, which never go to a log
                    log.error("batcher step failed: %s", type(exc).__name__)
                stop.wait(backoff * (0.75 + 0.5 * random.random()))
                continue
            stop.wait(self.idle_wait)
