"""The indexer: keeps :class:`registry.service.index.ChainIndex` in step with the ledger.

Chain indexing practice (``/work/shared/REFERENCE.md``, "Chain indexing practice"):

- backfill from the manifest's deployment block in bounded ``eth_getLogs`` chunks
  (``chunk`` blocks; halved when the node refuses a range as too large), then follow new
  blocks;
- store the hash of every block with an event and of each chunk's last block (the
  cursor), and full headers (hash, parent, timestamp) of the blocks near the head;
- before each sync check that the cursor block is still on the chain; if not (or if a
  fetched header's parent does not match), walk the stored blocks down to the highest one
  the chain still has (the common ancestor) and roll everything above it back in the same
  transaction that re-applies the new blocks and moves the cursor;
- applying a log twice changes nothing (keyed by block hash and log index).

Item states: ``pending`` (not on chain) -> ``included`` (``n`` confirmations, counting the
including block) -> ``final`` (``n >= confirmations``), see :func:`item_state`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound, ProviderConnectionError
from web3.types import RPCEndpoint

from registry._utils.backoff import Backoff
from registry._utils.logs import exc_type
from registry.service.index import BlockRef, ChainIndex
from registry.ledger.base import LedgerEvent, rpc_int
from registry.ledger.deploy import Manifest
from registry.ledger.errors import DeploymentError, LedgerError, LedgerUnavailable
from registry.ledger.registry_contract import RegistryContract

log = logging.getLogger("registry.service.indexer")

T = TypeVar("T")

#: Blocks below the head whose full headers are fetched and chained (reorganisation zone).
DEFAULT_HEADER_WINDOW = 64
_HEADER_BATCH = 200
_ANCESTOR_BATCH = 64
_MAX_BACKOFF = 30.0


def node_call(thunk: Callable[[], T]) -> T:
    """Run a node request; a node that cannot be reached becomes ``LedgerUnavailable``."""
    try:
        return thunk()
    except (OSError, ProviderConnectionError) as exc:
        raise LedgerUnavailable(f"ledger node unreachable: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("requests", "urllib3", "aiohttp")):
            raise LedgerUnavailable(f"ledger node unreachable: {exc}") from exc
        raise


def item_state(block_number: int | None, head: int | None, required: int) -> tuple[str, int]:
    """(state, confirmations) of an item included at ``block_number`` when the head is ``head``.

    Confirmations count the including block (1 = just included). ``final`` needs
    ``max(required, 1)`` of them.
    """
    if block_number is None or head is None or head < block_number:
        return ("pending", 0) if block_number is None else ("included", 1)
    confirmations = head - block_number + 1
    return ("final" if confirmations >= max(required, 1) else "included"), confirmations


class _ChainMoved(Exception):
    """The chain changed while a range was being read: start the sync over."""


def _hex(value: Any) -> str:
    return HexBytes(value).to_0x_hex()


def _too_large(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(k in text for k in ("too many", "more than", "limit", "range", "too large", "exceed"))


@dataclass
class IndexerStats:
    syncs: int = 0
    log_requests: int = 0
    max_log_range: int = 0
    events_applied: int = 0
    reorgs: int = 0
    last_reorg_depth: int = 0
    restarts: int = 0
    head: int | None = None
    last_sync_at: float | None = None
    #: ``time.monotonic()`` when the last complete sync began (read the head): the index
    #: reflects the chain at least as of then (registry/service/facade.py, index freshness)
    synced_as_of: float | None = None
    last_error: str | None = None
    ledger_up: bool = False
    log_ranges: list[tuple[int, int]] = field(default_factory=list)


class Indexer:
    """Follows the registry contract of ``manifest`` on ``w3`` into ``index``."""

    def __init__(
        self,
        w3: Web3,
        manifest: Manifest,
        index: ChainIndex,
        confirmations: int = 2,
        chunk: int = 2000,
        *,
        header_window: int = DEFAULT_HEADER_WINDOW,
        poll_interval: float = 0.5,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1 block")
        if confirmations < 0:
            raise ValueError("confirmations cannot be negative")
        self.w3 = w3
        self.manifest = manifest
        self.index = index
        self.confirmations = confirmations
        self.chunk = chunk
        self.header_window = max(header_window, confirmations + 1, 2)
        self.poll_interval = poll_interval
        self.max_backoff = _MAX_BACKOFF
        self.registry = RegistryContract(w3, manifest.address("ZkIdRegistry"))
        self.decoder = LogDecoder(self.registry.contract.abi, self.registry.address)  # type: ignore[arg-type]
        self.lock = threading.Lock()
        self.stats = IndexerStats()
        #: Replicas share the index: record every complete sync in it for the followers.
        self.shared = False
        index.bind(manifest.chain_id, self.registry.address, manifest.deployment_block_hash)

    # ------------------------------------------------------------------ public

    def state_of(self, block_number: int | None) -> tuple[str, int]:
        return item_state(block_number, self.index.head, self.confirmations)

    def sync_once(self, stop: threading.Event | None = None) -> int:
        """Index everything up to the current head; return the number of events applied."""
        with self.lock:
            for _ in range(5):
                began = time.monotonic()
                try:
                    applied = self._sync(stop)
                except _ChainMoved:
                    self.stats.restarts += 1
                    continue
                except LedgerUnavailable as exc:
                    self.stats.ledger_up = False
                    self.stats.last_error = exc_type(exc)  # the type only, as in logs
                    raise
                self.stats.syncs += 1
                self.stats.ledger_up = True
                self.stats.last_sync_at = time.time()
                if stop is None or not stop.is_set():  # a stopped sync may not have reached the head
                    self.stats.synced_as_of = began
                    if self.shared and self.stats.head is not None:
                        # Replicas: followers judge freshness by this (FreshIndexRoots).
                        self.index.record_sync(self.stats.head, time.monotonic() - began)
                self.stats.last_error = None
                return applied
            raise LedgerError("the chain kept changing while it was being indexed")

    def run(self, stop: threading.Event) -> None:
        """Sync until ``stop`` is set, backing off while the ledger is unreachable."""
        backoff = Backoff(2 * self.poll_interval, self.max_backoff)
        while not stop.is_set():
            try:
                self.sync_once(stop)
                backoff.succeeded()
                delay = self.poll_interval
            except LedgerUnavailable as exc:
                delay = backoff.failed()
                log.warning("ledger unreachable (%s), indexer retrying in %.1f s", exc_type(exc), delay)
            except Exception as exc:  # keep the thread alive; the error is reported by health
                self.stats.last_error = exc_type(exc)  # its text may quote commitments
                log.error("indexer sync failed: %s", exc_type(exc))  # its text may quote commitments
                delay = backoff.failed()
            stop.wait(delay)

    # ------------------------------------------------------------------ sync

    def _sync(self, stop: threading.Event | None) -> int:
        head = node_call(lambda: int(self.w3.eth.block_number))
        self.stats.head = head
        deployment = self.manifest.deployment_block
        cursor = self.index.cursor
        rollback_to: int | None = None
        if cursor is None:
            self._check_deployment(head)
            start = deployment
        else:
            ancestor = self._ancestor(cursor, head)
            if ancestor < cursor:
                rollback_to = ancestor
                self.stats.reorgs += 1
                self.stats.last_reorg_depth = cursor - ancestor
                log.warning("chain reorganisation: rolling back %d block(s) to %d", cursor - ancestor, ancestor)
            start = min(cursor, ancestor) + 1
        applied = 0
        if start > head:
            if rollback_to is not None or self.index.head != head:
                self.index.apply([], [], cursor=start - 1, head=head, rollback_to=rollback_to)
            return 0
        frm = start
        while frm <= head:
            if stop is not None and stop.is_set():
                break
            to = min(frm + self.chunk - 1, head)
            events, blocks, to = self._fetch(frm, to, head)
            n = self.index.apply(events, blocks, cursor=to, head=head, rollback_to=rollback_to)
            rollback_to = None
            applied += n
            self.stats.events_applied += n
            frm = to + 1
        return applied

    def _check_deployment(self, head: int) -> None:
        block = self.manifest.deployment_block
        found = self._hash_at(block) if block <= head else None
        if found != self.manifest.deployment_block_hash.lower():
            raise DeploymentError(
                f"block {block} of the deployment is not on this chain (the ledger was reset or is another chain)"
            )

    def _hash_at(self, number: int) -> str | None:
        try:
            block = node_call(lambda: self.w3.eth.get_block(number))
        except BlockNotFound:
            return None
        return _hex(block["hash"]).lower()

    def _headers(self, numbers: Sequence[int]) -> dict[int, BlockRef]:
        """Full headers of ``numbers`` (JSON-RPC batches); the chain moved if one is missing."""
        result: dict[int, BlockRef] = {}
        for i in range(0, len(numbers), _HEADER_BATCH):
            part = numbers[i : i + _HEADER_BATCH]

            def fetch(part: Sequence[int] = part) -> list[Any]:
                with self.w3.batch_requests() as batch:
                    for n in part:
                        batch.add(self.w3.eth.get_block(n))
                    return list(batch.execute())

            try:
                blocks = node_call(fetch)
            except BlockNotFound as exc:
                raise _ChainMoved() from exc
            for b in blocks:
                ref = BlockRef(
                    number=int(b["number"]),
                    hash=_hex(b["hash"]).lower(),
                    parent_hash=_hex(b["parentHash"]).lower(),
                    timestamp=int(b["timestamp"]),
                )
                result[ref.number] = ref
        return result

    def _ancestor(self, cursor: int, head: int) -> int:
        """The highest stored block still on the chain (``cursor`` if nothing changed)."""
        stored = self.index.block_hash(cursor)
        if stored is not None and cursor <= head and self._hash_at(cursor) == stored:
            return cursor
        below = cursor if stored is not None else cursor + 1
        while True:
            candidates = [(n, h) for n, h in self.index.stored_blocks(below, _ANCESTOR_BATCH)]
            if not candidates:
                break
            on_chain = [n for n, _ in candidates if n <= head]
            chain = self._headers(sorted(on_chain)) if on_chain else {}
            for n, h in candidates:
                if n in chain and chain[n].hash == h:
                    return n
            below = candidates[-1][0]
        self._check_deployment(head)
        return self.manifest.deployment_block - 1

    def _get_logs(self, frm: int, to: int) -> tuple[list[dict[str, Any]], int]:
        """Raw ``eth_getLogs`` results of the registry (hex strings, no web3 formatting:
        :class:`LogDecoder` reads them directly)."""
        w3 = self.w3
        while True:
            params = [{"address": self.registry.address, "fromBlock": hex(frm), "toBlock": hex(to)}]
            response = node_call(lambda: w3.provider.make_request(RPCEndpoint("eth_getLogs"), params))
            error = response.get("error")
            if error is not None:
                message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
                if to > frm and _too_large(Exception(message)):
                    to = frm + (to - frm) // 2
                    self.chunk = max(1, to - frm + 1)
                    continue
                raise LedgerError(f"eth_getLogs {frm}..{to} failed: {message}")
            logs = response.get("result")
            if not isinstance(logs, list):
                raise LedgerError(f"eth_getLogs {frm}..{to}: unexpected answer")
            self.stats.log_requests += 1
            self.stats.max_log_range = max(self.stats.max_log_range, to - frm + 1)
            if len(self.stats.log_ranges) < 10_000:
                self.stats.log_ranges.append((frm, to))
            return logs, to

    def _fetch(self, frm: int, to: int, head: int) -> tuple[list[LedgerEvent], list[BlockRef], int]:
        raw, to = self._get_logs(frm, to)
        logs = [lg for lg in raw if not lg.get("removed", False)]
        window_start = max(frm, head - self.header_window + 1)
        wanted = set(range(window_start, to + 1)) if window_start <= to else set()
        wanted.add(to)  # the cursor block is always stored
        stamps: dict[str, int] = {}
        for lg in logs:
            stamp = lg.get("blockTimestamp")
            if stamp is not None:
                stamps[str(lg["blockHash"]).lower()] = rpc_int(stamp)
            else:
                wanted.add(rpc_int(lg["blockNumber"]))
        headers = self._headers(sorted(wanted))
        # Everything read must come from one chain: logs match the headers, headers chain up.
        for lg in logs:
            ref = headers.get(rpc_int(lg["blockNumber"]))
            if ref is not None and ref.hash != str(lg["blockHash"]).lower():
                raise _ChainMoved()
        for n, ref in headers.items():
            prev = headers.get(n - 1)
            if prev is not None and ref.parent_hash != prev.hash:
                raise _ChainMoved()
        first = headers.get(frm)
        if first is not None:
            stored_parent = self.index.block_hash(frm - 1)
            if stored_parent is not None and first.parent_hash != stored_parent:
                raise _ChainMoved()
        blocks = dict(headers)
        events: list[LedgerEvent] = []
        for lg in logs:
            event = self.decoder.decode(lg)
            if event is None:
                continue
            if event.block_number not in blocks:
                blocks[event.block_number] = BlockRef(
                    event.block_number, event.block_hash, None, stamps.get(event.block_hash)
                )
            events.append(event)
        return events, [blocks[n] for n in sorted(blocks)], to


class LogDecoder:
    """Decodes raw JSON-RPC logs of one contract into :class:`LedgerEvent` with eth_abi.

    Same result as ``BoundContract.decode_log`` (web3's ``process_log``: checksummed
    addresses, ints, lists), which costs ~1 ms per log in generic formatting: too slow
    for a backfill of many thousands of events.
    """

    def __init__(self, abi: Sequence[dict[str, Any]], address: str) -> None:
        self.address = Web3.to_checksum_address(address)
        self._lower = self.address.lower()
        self._events: dict[str, tuple[str, list[tuple[str, str]], list[tuple[str, str]]]] = {}
        for item in abi:
            if item.get("type") != "event" or item.get("anonymous"):
                continue
            inputs = item.get("inputs", [])
            topic = "0x" + bytes(event_abi_to_log_topic(item)).hex()  # type: ignore[arg-type]
            indexed = [(str(i["name"]), str(i["type"])) for i in inputs if i.get("indexed")]
            plain = [(str(i["name"]), str(i["type"])) for i in inputs if not i.get("indexed")]
            self._events[topic] = (str(item["name"]), indexed, plain)

    @staticmethod
    def _value(kind: str, value: Any) -> Any:
        if kind == "address":
            return Web3.to_checksum_address(value)
        if kind.endswith("]"):
            return [LogDecoder._value(kind[: kind.rindex("[")], v) for v in value]
        return value

    def decode(self, log: dict[str, Any]) -> LedgerEvent | None:
        """The event, or None for a log of another contract or an unknown event."""
        if str(log.get("address", "")).lower() != self._lower:
            return None
        topics = [str(t).lower() for t in log.get("topics", [])]
        spec = self._events.get(topics[0]) if topics else None
        if spec is None:
            return None
        name, indexed, plain = spec
        if len(topics) != len(indexed) + 1:
            return None
        args: dict[str, Any] = {}
        for (arg, kind), topic in zip(indexed, topics[1:]):
            args[arg] = self._value(kind, abi_decode([kind], bytes.fromhex(topic[2:]))[0])
        data = str(log.get("data", "0x"))
        values = abi_decode([k for _, k in plain], bytes.fromhex(data[2:])) if plain else ()
        for (arg, kind), value in zip(plain, values):
            args[arg] = self._value(kind, value)
        return LedgerEvent.at(name, args, self.address, log)
