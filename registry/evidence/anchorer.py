"""Anchoring evidence-log checkpoints on the ledger (``EvidenceAnchor`` contract).

Policy: a checkpoint is anchored when the log has grown by ``min_growth`` entries since
the last anchor, or when unanchored entries were first seen ``max_delay``
seconds ago (default ``10 * min_interval``); never more than one transaction per
``min_interval`` seconds (``force`` skips these thresholds). One anchor covers any number of records.
Whether an anchor is due is decided from the anchors recorded locally, so the ledger is
read only when one is (or with ``force``), not on every poll.

Safety: before sending, the new checkpoint must be an RFC 9162 extension of the newest
anchor *on the ledger* (consistency proof from the ledger's (size, root) to the new
one, checked with :func:`zk.evidence.merkle.check_consistency`); otherwise nothing is
sent and :class:`AnchorRefused` is raised. A rewritten log therefore never gets anchored.
Ledger errors are retried with exponential backoff; the resulting tx, block and block
time are stored in the log's ``anchors`` table.

The log's on-chain id is bound to its key (:func:`registry.ledger.anchor_contract.log_id`
of its origin and Ed25519 public key). A log id that is not registered, or whose current
operators exclude this account (someone else controls it: "squatted"), is a standing
problem, not a transient error: it is found with view calls before anything is sent, kept
in :attr:`Anchorer.problem` (a health reason) and re-checked every
``PROBLEM_RECHECK`` seconds instead of being retried at the poll rate.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hexbytes import HexBytes

from registry._utils.backoff import Backoff, backoff_delay
from registry._utils.logs import exc_type
from registry.evidence.log import EvidenceLog, StoredAnchor
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.errors import CallerIsNotOperator, LedgerError, LedgerUnavailable, LogNotRegistered, TransactionFailed
from zk.evidence import merkle
from zk.evidence.note import Checkpoint, open_checkpoint

log = logging.getLogger(__name__)

T = TypeVar("T")


#: Seconds between re-checks of a standing problem (unregistered or squatted log id).
PROBLEM_RECHECK = 300.0


class AnchorRefused(ValueError):
    """The log's checkpoint does not extend the ledger's newest anchor; nothing was sent."""

    code = "evidence_log_inconsistent"


class LogUnregistered(AnchorRefused):
    """The log's key-bound id is not registered on the contract (only its registrar can)."""

    code = "evidence_log_unregistered"


class LogSquatted(AnchorRefused):
    """The log's key-bound id is registered, but this account is not one of its operators."""

    code = "evidence_log_squatted"


_STANDING = (LogUnregistered.code, LogSquatted.code)


@dataclass(frozen=True)
class AnchorOutcome:
    """``status``: ``anchored``, ``not_due``, ``up_to_date``, ``empty`` or ``unavailable``."""

    status: str
    anchor: StoredAnchor | None = None
    detail: str = ""


class Anchorer:
    """See the module docstring. The on-chain id is derived from the log's origin and key."""

    def __init__(
        self,
        log: EvidenceLog,
        anchor_contract: AnchorContract,
        min_interval: float = 60.0,
        min_growth: int = 1000,
        *,
        max_delay: float | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if min_interval < 0 or min_growth < 1 or retries < 0 or backoff < 0:
            raise ValueError("min_interval, retries and backoff must be >= 0, min_growth >= 1")
        self.log = log
        self.contract = anchor_contract
        self.log_id = log_id(log.origin, log.verifier.public_key)
        #: The standing problem found by the last attempt (a health reason code), or None.
        self.problem: str | None = None
        self.min_interval = min_interval
        self.min_growth = min_growth
        self.max_delay = 10 * min_interval if max_delay is None else max_delay
        self.retries = retries
        self.backoff = backoff
        self.clock = clock
        self._stop = threading.Event()
        self._custom_sleep = sleep is not None
        self._sleep = sleep or self._stop.wait
        latest = log.latest_anchor()
        self._last_tx = latest.recorded_at if latest is not None else float("-inf")
        self._pending_since: float | None = None  # when unanchored entries were first seen

    def due_in(self) -> float | None:
        """Seconds until the unanchored records seen so far are due (0: at the next poll, or
        sooner with ``min_growth`` records); None when none are known to be waiting."""
        if self._pending_since is None:
            return None
        latest = self.log.latest_anchor()
        if latest is not None and latest.tree_size >= self.log.size:
            return None  # anchored just now (the anchorer has yet to clear its timer)
        now = self.clock()
        return max(0.0, self._pending_since + self.max_delay - now, self._last_tx + self.min_interval - now)

    # --- one step ----------------------------------------------------------------------

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (LedgerUnavailable, TransactionFailed) as exc:
                if attempt == self.retries:
                    raise
                delay = backoff_delay(attempt + 1, self.backoff, math.inf)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc_type(exc), delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def anchor_once(self, force: bool = False) -> AnchorOutcome:
        """Anchor the current checkpoint if due (or ``force``); see the module docstring.

        Ledger unavailability ends in ``AnchorOutcome("unavailable")`` after the retries;
        an inconsistent log raises :class:`AnchorRefused` without sending anything."""
        try:
            outcome = self._anchor_once(force)
        except AnchorRefused as exc:
            self.problem = exc.code
            raise
        except (LedgerUnavailable, TransactionFailed) as exc:
            log.warning("anchoring postponed: %s", exc_type(exc))
            return AnchorOutcome("unavailable", detail=str(exc))
        if outcome.status == "anchored" or outcome.detail == "ledger":
            self.problem = None  # the ledger was consulted and all is well
        return outcome

    def _anchor_once(self, force: bool) -> AnchorOutcome:
        size = self.log.size
        if size == 0:
            return AnchorOutcome("empty")
        now = self.clock()
        if not force:
            # Decide from the locally recorded anchor first: the ledger is read only when an
            # anchor is due, not on every poll (the ledger is re-checked before any send).
            local = self.log.latest_anchor()
            known = local.tree_size if local is not None else 0
            if size <= known:
                return AnchorOutcome("up_to_date", local)
            if self._pending_since is None:
                self._pending_since = now
            if now - self._last_tx < self.min_interval:
                return AnchorOutcome("not_due", detail="min_interval")
            if size - known < self.min_growth and now - self._pending_since < self.max_delay:
                return AnchorOutcome("not_due", detail=f"growth {size - known} < {self.min_growth}")
        self._check_registration()
        prev = self._with_retries("reading the latest anchor", lambda: self.contract.latest_anchor(self.log_id))
        prev_size = prev.tree_size if prev is not None else 0
        prev_root = prev.root_hash if prev is not None else None
        if prev_root is not None and prev_size >= size:
            if prev_size > size or self.log.root(size) != prev_root:
                raise AnchorRefused(f"the ledger anchors size {prev_size} with a root this log does not have")
            self._remember(prev_size, prev_root, None)
            self._pending_since = None
            return AnchorOutcome("up_to_date", self.log.latest_anchor(), detail="ledger")
        if self._pending_since is None:
            self._pending_since = now
        growth = size - prev_size
        if not force and growth < self.min_growth and now - self._pending_since < self.max_delay:
            # the ledger is ahead of our records (another writer anchored): not due after all
            return AnchorOutcome("not_due", detail=f"growth {growth} < {self.min_growth}")
        note = self.log.checkpoint(size)
        checkpoint, _ = open_checkpoint(note, [self.log.verifier], origin=self.log.origin)
        self._check_extends(prev_size, prev_root, checkpoint)
        receipt = self._with_retries(
            "sending the anchor", lambda: self._send(checkpoint.size, checkpoint.root_hash)
        )
        self._last_tx = now
        stored = self._remember(checkpoint.size, checkpoint.root_hash, receipt)
        self._pending_since = None
        log.info("anchored %s size %d in block %d", self.log.origin, stored.tree_size, stored.block_number)
        return AnchorOutcome("anchored", stored)

    def check_registration(self) -> None:
        """Raise :class:`LogUnregistered` / :class:`LogSquatted` and keep it in
        :attr:`problem`; clear such a problem when the registration is fine again."""
        try:
            self._check_registration()
        except AnchorRefused as exc:
            self.problem = exc.code
            raise
        if self.problem in _STANDING:
            self.problem = None

    def _check_registration(self) -> None:
        """Raise :class:`LogUnregistered` / :class:`LogSquatted` (view calls only)."""
        if self.contract.tx is None:
            return  # a read-only contract: the send itself will say
        me = self.contract.tx.address
        if self._with_retries("reading the operators", lambda: self.contract.is_operator(self.log_id, me)):
            return
        try:
            self._with_retries("reading the log", lambda: self.contract.log_info(self.log_id))
        except LogNotRegistered:
            raise LogUnregistered(
                f"log id 0x{self.log_id.hex()} ({self.log.origin} with this log key) is not registered on "
                f"{self.contract.address}; its registrar must register it"
            ) from None
        raise LogSquatted(
            f"log id 0x{self.log_id.hex()} ({self.log.origin} with this log key) is registered, but {me} is "
            "not one of its operators; its owner must add this account"
        )

    def _check_extends(self, prev_size: int, prev_root: bytes | None, checkpoint: Checkpoint) -> None:
        if prev_root is None:
            return  # first anchor: nothing to extend
        try:
            proof = self.log.consistency(prev_size, checkpoint.size)
            merkle.check_consistency(prev_size, checkpoint.size, prev_root, checkpoint.root_hash, proof)
        except merkle.ProofError as exc:
            log.error("refusing to anchor %s size %d: %s", self.log.origin, checkpoint.size, exc_type(exc))
            raise AnchorRefused(
                f"checkpoint {checkpoint.size} is not consistent with the anchored size {prev_size}: {exc}"
            ) from None

    def _send(self, size: int, root: bytes) -> Any:
        # A retry after a lost response must not double-anchor: look first.
        current = self.contract.get_anchor(self.log_id, size)
        if current is not None and current.root_hash == root:
            return None
        try:
            return self.contract.anchor(self.log_id, size, root)
        except CallerIsNotOperator:  # removed as operator since the check: nothing was sent
            raise LogSquatted(f"{self.contract.tx.address if self.contract.tx else '?'} is no longer an operator "
                              f"of log id 0x{self.log_id.hex()}") from None

    def _remember(self, size: int, root: bytes, receipt: Any) -> StoredAnchor:
        onchain = self._with_retries("reading the anchor", lambda: self.contract.get_anchor(self.log_id, size))
        if onchain is None or onchain.root_hash != root:
            raise LedgerError(f"anchor of size {size} not found on the ledger after sending")
        block_number = onchain.block_number
        existing = self.log.latest_anchor()
        if receipt is not None:
            tx_hash = bytes(HexBytes(receipt["transactionHash"]))
        elif existing is not None and existing.tree_size == size:
            return existing
        else:  # find the tx from the Anchored event of that block
            events = self.contract.anchor_events(self.log_id, block_number, block_number)
            if not events:
                raise LedgerError(f"no Anchored event for size {size} in block {block_number}")
            tx_hash = bytes(HexBytes(events[-1].tx_hash))
        stored = StoredAnchor(
            tree_size=size,
            root_hash=root,
            chain_id=self.contract.tx.chain_id if self.contract.tx is not None else int(self.contract.w3.eth.chain_id),
            contract=self.contract.address,
            tx_hash=tx_hash,
            block_number=block_number,
            block_time=onchain.timestamp,
            recorded_at=self.clock(),
        )
        self.log.record_anchor(stored)
        return stored

    # --- loop --------------------------------------------------------------------------

    def run(self, stop_event: threading.Event, poll: float = 1.0) -> None:
        """Anchor whenever due until ``stop_event`` is set; refusals are logged, not fatal."""
        self._stop = stop_event
        if not self._custom_sleep:
            self._sleep = stop_event.wait  # a backoff wait ends as soon as we are stopped
        failing = Backoff(2 * poll, 60.0)  # an unreachable ledger, an unexpected error
        refused = Backoff(2 * poll, PROBLEM_RECHECK)  # a refusal repeats until an operator acts
        registration_checked = False
        while not stop_event.is_set():
            idle = poll
            try:
                # Checked at start (a problem shows in health before any anchor is due) and
                # on every re-check while it stands, so a fix on chain is noticed.
                if not registration_checked or self.problem in _STANDING:
                    self.check_registration()
                    registration_checked = True
                outcome = self.anchor_once()
                if outcome.status == "unavailable":
                    idle = failing.failed()  # wait longer each time (the retries already waited)
                else:
                    failing.succeeded()
                    refused.succeeded()
            except (LogUnregistered, LogSquatted) as exc:
                log.error("evidence log NOT anchored (%s); re-checking in %.0f s", exc.code, PROBLEM_RECHECK)
                idle = PROBLEM_RECHECK  # standing until someone acts on chain: no tight retries
            except AnchorRefused as exc:
                log.error("evidence log NOT anchored (%s)", exc.code)
                idle = refused.failed()
            except Exception as exc:  # keep the loop alive; the next tick retries
                log.error("anchoring failed: %s", exc_type(exc))
                idle = failing.failed()
            stop_event.wait(idle)
