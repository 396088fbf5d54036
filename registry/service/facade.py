"""The registry service: the library facade that the HTTP layer and the CLI call.

It ties together (the data directory layout of docs/operations.md)

- the chain index ``index.sqlite`` (:mod:`registry.service.index`, rebuildable) kept up to date by
  the indexer thread (:mod:`registry.service.indexer`),
- the outbox ``outbox.sqlite`` (:mod:`registry.service.outbox`, durable registrations) drained by
  the batcher thread (:mod:`registry.service.batcher`),
- the nullifier store ``nullifiers.sqlite`` and the :class:`registry.service.authorization.Authorizer`
  (checks of ``docs/authorization.md``, roots from the index),
- the ledger (``settings.rpc_url``, else the local Anvil of the data directory) and its
  deployment manifest.

No HTTP concept lives here: refusals are :class:`RegistryError` with a machine-readable
``code`` and the HTTP ``status`` the web layer should answer with:

======================  ======  ===============================================
code                    status  meaning
======================  ======  ===============================================
malformed               400     an argument has the wrong type or range
invalid_commitment      400     a commitment is not a field element in (0, r)
too_many                413     more than ``MAX_PER_CALL`` commitments at once
forbidden               403     this registry's account does not administer the group
unknown_group           404     no such group (in the index)
not_member              404     the commitment is not (or no longer) a member
unknown_root            404     the root was never a root of any group
duplicate               409     already a member, or already registered and pending
pending                 409     registered but not yet on chain (no Merkle proof yet)
ledger_unavailable      503     the ledger node cannot be reached
ledger_error            502     the ledger refused or failed an operator action
not_deployed            503     no (readable) deployment manifest
deployment_mismatch     503     the manifest does not match the ledger's contracts
not_configured          503     no usable signing account (keystore locked, or not
                                Anvil and no keystore)
======================  ======  ===============================================

Registrations never need the ledger: they are durable in the outbox before
:meth:`RegistryService.register` returns, so they are accepted while the ledger is down.
Nothing here logs commitments, proofs, nullifiers or messages.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import requests.utils
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.providers.rpc import HTTPProvider

from registry.service.admission import FILE_NAME as ADMISSION_FILE
from registry.service.admission import TABLES as ADMISSION_TABLES
from registry.service.admission import AdmissionStore, GroupAdmission, ZkAdmission, refusal
from registry.service.authorization import Authorizer, Decision, GroupPolicy, RootStatus, SqliteNullifierStore
from registry.service.batcher import Batcher
from registry.service.index import FILE_NAME as INDEX_FILE
from registry.service.index import ChainIndex, delete_index_files
from registry.service.indexer import Indexer, item_state, node_call
from registry.ledger.accounts import PASSWORD_ENV, anvil_dev_account, choose_signer, load_keystore
from registry.ledger.anvil import HOST, LocalLedger
from registry.ledger.deploy import Manifest, read_manifest, verify_deployment
from registry.ledger.errors import DeploymentError, LedgerError, LedgerUnavailable, LogNotRegistered
from registry.evidence.anchorer import Anchorer
from registry.evidence.log import EvidenceLog, default_origin, load_or_create_log_key
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from registry.storage.access_log import FILE_NAME as ACCESS_LOG_FILE
from registry.storage.access_log import check_access_log
from registry.service.outbox import FILE_NAME as OUTBOX_FILE
from registry._utils.integers import UINT64_MAX, bounded_int
from registry._utils.logs import exc_type
from registry.service.outbox import MAX_GROUP_ID, Outbox, RegistryError, check_commitments, check_group_id, check_int
from registry.service.leadership import MIGRATIONS as LEASE_MIGRATIONS
from registry.service.leadership import Leadership
from registry.service.settings import Settings
from registry.storage.database import (
    IDLE_IN_TRANSACTION_TIMEOUT,
    INDEX_IDLE_IN_TRANSACTION_TIMEOUT,
    Database,
    open_store_database,
)
from registry.storage.dir_lock import DataDirLock
from registry.storage.migrations import migrate
from registry.storage.sqlite import StoreManifest, check_store
from zk.field import R
from zk.relay_scope import RegistryRef, acceptable_epochs
from zk.tree import MerkleProof

__all__ = ["RegistryError", "MemberStatus", "RegistryService", "reindex", "NULLIFIERS_FILE"]

log = logging.getLogger("registry.service.facade")

NULLIFIERS_FILE = "nullifiers.sqlite"
#: The leader lease's store (PostgreSQL only: schema ``zkid_leader``).
LEADER_FILE = "leader"
EVIDENCE_FILE = "evidence.sqlite"
#: Seconds between purges of nullifiers whose epoch can no longer be accepted.
PURGE_INTERVAL = 60.0
_PROBE_TIMEOUT = 2.0
#: The durable stores (file -> tables that must be there), always created together by
#: :meth:`RegistryService.open`: losing one loses acknowledged data (docs/operations.md).
DURABLE_STORES: dict[str, tuple[str, ...]] = {
    OUTBOX_FILE: ("registrations",),
    NULLIFIERS_FILE: ("nullifiers",),
    EVIDENCE_FILE: ("meta", "entries", "nodes", "checkpoints"),
}
#: Admission policies, credentials and invite hashes (registry/service/admission.py): durable too,
#: but added later than the others, so it is checked on its own (a data directory from
#: before it has the other stores and no admission.sqlite yet).
ADMISSION_STORES: dict[str, tuple[str, ...]] = {ADMISSION_FILE: ADMISSION_TABLES}
#: The chain index's tables: it is rebuildable, so the fix for a damaged one is a reindex.
INDEX_TABLES = ("meta", "cursor", "blocks", "events", "groups", "members", "roots")
REINDEX_FIX = "run `zkid reindex` to rebuild it from the ledger"


@dataclass(frozen=True)
class MemberStatus:
    group_id: int
    commitment: int
    status: str  # "pending" | "included" | "final" | "refused"
    index: int | None
    tx_hash: str | None
    block_number: int | None
    confirmations: int
    #: why the ledger refused the registration for good (status "refused"): a code
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "group_id": self.group_id,
            "commitment": str(self.commitment),
            "status": self.status,
            "index": self.index,
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "confirmations": self.confirmations,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data


def _check_commitment(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < R:
        raise RegistryError("invalid_commitment", "a commitment is a field element in (0, r)")
    return value


def ledger_session(rpc_url: str) -> requests.Session:
    """The HTTP session of the ledger client: the environment's proxy and CA-bundle
    settings for ``rpc_url`` read once, here, not on every JSON-RPC call (``requests``
    scans the whole environment per request when ``trust_env`` is on: the largest single
    item of the indexer's and batcher's CPU in the registration benchmark, BENCHMARKS.md).
    ``.netrc`` credentials are not read (put them in the URL)."""
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(rpc_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


def _web3(rpc_url: str, timeout: float) -> Web3:
    # No automatic retries: the indexer and the batcher retry with their own backoff, and
    # a health probe must answer quickly when the node is down.
    return Web3(HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, session=ledger_session(rpc_url), exception_retry_configuration=None
    ))


def ledger_rpc_url(settings: Settings) -> str:
    """``settings.rpc_url``, else the running local ledger of the data directory, else the
    default local ledger address."""
    if settings.rpc_url:
        return settings.rpc_url
    for directory in (settings.data_dir / "anvil", settings.data_dir):
        status = LocalLedger(directory, settings.ledger_port).status()
        if status.running and status.rpc_url:
            return status.rpc_url
    return f"http://{HOST}:{settings.ledger_port}"


def load_manifest_file(path: Path) -> Manifest:
    if not path.exists():
        raise RegistryError("not_deployed", f"no deployment manifest at {path} (run `zkid deploy`)")
    try:
        return read_manifest(path)  # strictly (zk/strict_json.py)
    except DeploymentError as exc:
        raise RegistryError("not_deployed", f"unusable deployment manifest: {exc}") from None


def _check_sqlite_stores(data_dir: Path) -> StoreManifest:
    """Before anything opens them: SQLite would create an empty store in place of a lost
    one (StoreError, one line naming the file and the fix)."""
    stores = StoreManifest(data_dir)
    stores.check(DURABLE_STORES, together=True)
    stores.check(ADMISSION_STORES)
    index_path = data_dir / INDEX_FILE
    if index_path.exists() and index_path.stat().st_size > 0:  # missing or empty: rebuilt from the chain
        check_store(index_path, INDEX_TABLES, REINDEX_FIX)
    check_access_log(data_dir / ACCESS_LOG_FILE)
    return stores


def store_database(
    settings: Settings, file_name: str, *, durable: bool = True, timeout: float = 10.0, create: bool = True
) -> Database:
    """One store's database: ``data_dir/file_name`` (SQLite) or its schema in the
    PostgreSQL database of ``settings.database_url`` (registry/storage/database.py);
    ``timeout``: the longest wait for a pooled connection (then sqlite3.OperationalError)."""
    idle = INDEX_IDLE_IN_TRANSACTION_TIMEOUT if file_name == INDEX_FILE else IDLE_IN_TRANSACTION_TIMEOUT
    return open_store_database(
        settings.database,
        settings.data_dir,
        file_name,
        durable=durable,
        pool_size=settings.database_pool_size,
        timeout=timeout,
        idle_timeout=idle,
        create_schema=create,
    )


def open_stores(
    settings: Settings, clock: Callable[[], float]
) -> tuple[ChainIndex, Outbox, SqliteNullifierStore, EvidenceLog, AdmissionStore, Leadership]:
    """Open (and migrate) every store of the registry on the configured database, and the
    leader lease beside the outbox. The evidence log's signing key stays a file in
    data_dir on every backend (each replica needs the same key: docs/deployment.md)."""
    data_dir = settings.data_dir
    opened: list[Any] = []
    try:
        index = ChainIndex(store_database(settings, INDEX_FILE, durable=False))
        opened.append(index)
        outbox_db = store_database(settings, OUTBOX_FILE)
        outbox = Outbox(outbox_db, is_member=index.has_member, clock=clock, max_backlog=settings.max_backlog)
        opened.append(outbox)
        nullifiers = SqliteNullifierStore(store_database(settings, NULLIFIERS_FILE))
        opened.append(nullifiers)
        origin = default_origin(settings.region)
        evidence = EvidenceLog(store_database(settings, EVIDENCE_FILE), load_or_create_log_key(data_dir, origin), origin)
        opened.append(evidence)
        admission = AdmissionStore(store_database(settings, ADMISSION_FILE), clock)
        opened.append(admission)
        leadership = Leadership(None)
        if outbox_db.is_postgres:  # replicas: the lease has a schema of its own (zkid_leader)
            # A short wait: a renewal that cannot reach the database must fail well within
            # the lease, and health asks the lease first (one quick answer when it is down).
            lease_db = store_database(settings, LEADER_FILE, timeout=min(2.0, settings.leader_lease / 3))
            migrate(lease_db, LEASE_MIGRATIONS)
            leadership = Leadership(lease_db, lease=settings.leader_lease)
            opened.append(leadership)
    except BaseException:
        for store in reversed(opened):
            store.close()
        raise
    return index, outbox, nullifiers, evidence, admission, leadership


class FreshIndexRoots:
    """The index as the :class:`registry.service.authorization.RootOracle` of the registry path,
    answering :attr:`RootStatus.STALE` (refusal ``index_stale``) while the index may lag the
    chain: its last complete sync began more than ``max_age`` seconds ago (monotonic
    time), or it is more than ``max_lag`` blocks behind the head the indexer last saw.

    A stalled index would keep a removed member's root "current" forever; this bounds the
    extra time a superseded root can be accepted to ``max_age`` (docs/authorization.md),
    where the relay's ledger path (:class:`registry.relay.authorization.LedgerRoots`) reads the
    chain itself and fails when it cannot.
    """

    def __init__(
        self, index: ChainIndex, indexer: Indexer, max_age: float, max_lag: int, *, leads: Callable[[], bool] | None = None
    ) -> None:
        self._index = index
        self._indexer = indexer
        self.max_age = max_age
        self.max_lag = max_lag
        #: Replicas: whether this one runs the indexer now (None: always, one process).
        self._leads = leads
        # A follower's last read of the leader's sync record: (monotonic time read, state).
        # Reused for FOLLOWER_CACHE seconds, so authorizations do not each read it.
        self._follower_state: tuple[float, tuple[int, int, float] | None] | None = None

    def stale(self) -> bool:
        if self._leads is not None and not self._leads():
            return self._stale_follower()
        stats = self._indexer.stats
        synced, head, cursor = stats.synced_as_of, stats.head, self._index.cursor
        if synced is None or head is None or cursor is None:
            return True  # never completely synced since this process started
        return time.monotonic() - synced > self.max_age or head - cursor > self.max_lag

    #: Seconds a follower reuses the leader's sync record (adds at most this to the bound).
    FOLLOWER_CACHE = 0.5

    def _stale_follower(self) -> bool:
        """A follower's view: the leader records each complete sync in the shared index,
        and its age is measured on the database's clock (replicas' clocks do not enter)."""
        cached = self._follower_state
        if cached is not None and time.monotonic() - cached[0] < self.FOLLOWER_CACHE:
            state = cached[1]
        else:
            try:
                state = self._index.sync_state()
            except Exception:  # database away: fail closed
                self._follower_state = None
                return True
            self._follower_state = (time.monotonic(), state)
        if state is None:
            return True
        cursor, head, age = state
        age += time.monotonic() - self._follower_state[0] if self._follower_state is not None else 0.0
        return age > self.max_age or head - cursor > self.max_lag

    def root_status(self, group_id: int, root: int, now: float) -> RootStatus:
        if self.stale():
            return RootStatus.STALE
        return self._index.root_status(group_id, root, now)


class RegistryService:
    """Use :meth:`open`; then either :meth:`start` the background threads or drive the work
    with :meth:`sync` / :meth:`process_once` (tests, CLI one-shots). ``close`` when done."""

    def __init__(
        self,
        settings: Settings,
        *,
        w3: Web3,
        probe: Web3,
        manifest: Manifest,
        index: ChainIndex,
        outbox: Outbox,
        nullifiers: SqliteNullifierStore,
        account: LocalAccount | None,
        clock: Callable[[], float],
        evidence: EvidenceLog | None = None,
        admission: AdmissionStore | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.settings = settings
        #: Who runs the ledger writers (always this process on SQLite; registry/service/leadership.py).
        self.leadership = leadership if leadership is not None else Leadership(None)
        if self.leadership.shared:
            outbox.fence = self.leadership.fence  # a deposed leader's batcher writes nothing
        self.admission = admission if admission is not None else AdmissionStore(settings.data_dir / ADMISSION_FILE, clock)
        self.evidence = evidence
        self._anchorer: Anchorer | None = None
        self.w3 = w3
        self._probe = probe
        self._manifest = manifest
        self.index = index
        self.outbox = outbox
        self.nullifiers = nullifiers
        self.clock = clock
        self._account = account
        self._operator_lock = threading.Lock()
        self._dir_lock: DataDirLock | None = None  # set by open() on SQLite
        self._operator: RegistryContract | None = None
        self._operator_address: str | None = None
        self.indexer = Indexer(
            w3,
            manifest,
            index,
            settings.confirmations,
            settings.log_chunk,
            poll_interval=settings.poll_interval,
        )
        self.batcher = Batcher(
            outbox,
            self.operator,
            batch_size=settings.batch_size,
            batch_interval=settings.batch_interval,
            batch_min_size=settings.batch_min_size,
            batch_max_wait=settings.batch_max_wait,
            confirmations=settings.confirmations,
            index=index,
            idle_wait=min(0.1, settings.batch_interval / 4),
            clock=clock,
            max_fee_per_gas=settings.max_fee_per_gas,
            spend_per_hour=settings.spend_per_hour,
        )
        # Roots from the index, only while it is fresh (fail closed: index_stale).
        self.indexer.shared = self.leadership.shared
        self.index_roots = FreshIndexRoots(
            index, self.indexer, settings.index_max_age, settings.index_max_lag,
            leads=self.leadership.is_leader if self.leadership.shared else None,
        )
        # Scopes name this deployment (docs/authorization.md: LZE2, LZA2).
        deployment = RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry"))
        self.authorizer = Authorizer(self._policy, self.index_roots, nullifiers, clock=clock, registry=deployment)
        # Admission roots too: a stalled index must not admit with a removed person's root.
        self.zk_admission = ZkAdmission(self.admission, self.index_roots, clock=clock, registry=deployment)
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lifecycle = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        password: str | None = None,
        dir_lock: DataDirLock | None = None,
    ) -> RegistryService:
        """Open the stores, connect to the ledger, load the manifest, rebuild the trees.

        ``clock`` gives "now" for root validity and rate-limit epochs (injectable for
        tests); the keystore passphrase comes from ``password`` or ``$ZKID_KEYSTORE_PASSWORD``.
        Works while the ledger is down (it is then checked when it comes back).

        On SQLite the service holds the data directory's lock (registry/storage/dir_lock.py)
        until :meth:`close`; a caller that took it first (``zkid up``: before the ledger
        starts) passes it as ``dir_lock`` and keeps releasing it.
        """
        data_dir = settings.data_dir
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Replicas share their stores through PostgreSQL; SQLite stores are one process's.
        own = DataDirLock(data_dir, "registry") if settings.database is None and dir_lock is None else None
        try:
            service = cls._open(settings, clock, password)
        except BaseException:
            if own is not None:
                own.release()
            raise
        service._dir_lock = own
        return service

    @classmethod
    def _open(cls, settings: Settings, clock: Callable[[], float], password: str | None) -> RegistryService:
        data_dir = settings.data_dir
        stores = _check_sqlite_stores(data_dir) if settings.database is None else None
        manifest = load_manifest_file(settings.manifest_path)
        rpc_url = ledger_rpc_url(settings)
        w3 = _web3(rpc_url, 30.0)
        probe = _web3(rpc_url, _PROBE_TIMEOUT)
        account: LocalAccount | None = None
        if settings.keystore is not None:
            secret = password if password is not None else os.environ.get(PASSWORD_ENV)
            if secret is None:
                raise RegistryError("not_configured", f"set {PASSWORD_ENV} to unlock the keystore {settings.keystore}")
            try:
                account = load_keystore(settings.keystore, secret)
            except DeploymentError as exc:
                raise RegistryError("not_configured", str(exc)) from None
        try:
            problems = verify_deployment(w3, manifest)
        except (LedgerUnavailable, OSError):
            problems = []  # checked again by the indexer once the ledger is back
        except Exception as exc:
            if type(exc).__module__.startswith(("requests", "urllib3")):
                problems = []
            else:
                raise
        if problems:
            raise RegistryError("deployment_mismatch", f"{settings.manifest_path}: {problems[0]}")
        opened = open_stores(settings, clock)
        index, outbox, nullifiers, evidence, admission, leadership = opened
        if stores is not None:
            stores.record([*DURABLE_STORES, *ADMISSION_STORES])
        return cls(
            settings,
            w3=w3,
            probe=probe,
            manifest=manifest,
            index=index,
            outbox=outbox,
            nullifiers=nullifiers,
            account=account,
            clock=clock,
            evidence=evidence,
            admission=admission,
            leadership=leadership,
        )

    def operator(self) -> RegistryContract:
        """The registry contract with this registry's signing account (created on first use:
        on Anvil without a keystore it needs the node, to check that it is Anvil)."""
        with self._operator_lock:
            if self._operator is None:
                account = self._account
                if account is None:
                    try:
                        account = choose_signer(self.w3, None, None)
                    except DeploymentError as exc:
                        raise RegistryError("not_configured", str(exc)) from None
                    self._account = account
                tx = Transactor(self.w3, account, poll_interval=0.05)
                if self.leadership.shared:  # replicas share the key: one nonce reader at a time
                    tx.nonces.guard = self.leadership.send_lock
                self._operator = RegistryContract(self.w3, self._manifest.address("ZkIdRegistry"), tx)
            return self._operator

    def anchorer(self) -> Anchorer:
        """The evidence log's anchorer, registering the log's key-bound id on the
        EvidenceAnchor contract first if needed and this account is its registrar (so it
        needs the ledger; callers retry while it is down). If the id is not registered and
        cannot be, or is someone else's, the anchorer reports it (health) and sends nothing."""
        if self.evidence is None:
            raise RegistryError("not_configured", "this registry keeps no evidence log")
        with self._operator_lock:
            anchorer = self._anchorer
        if anchorer is not None:
            return anchorer
        tx = self.operator().tx
        contract = AnchorContract(self.w3, self._manifest.address("EvidenceAnchor"), tx)
        origin, key = self.evidence.origin, self.evidence.verifier.public_key
        try:
            contract.log_info(log_id(origin, key))
        except LogNotRegistered:
            if tx is not None and contract.registrar().lower() == tx.address.lower():
                contract.register_log(origin, key)
        anchorer = Anchorer(
            self.evidence,
            contract,
            min_interval=self.settings.anchor_interval,
            min_growth=self.settings.anchor_min_growth,
            max_delay=self.settings.anchor_max_delay,
        )
        with self._operator_lock:
            self._anchorer = anchorer
        return anchorer

    def _run_anchorer(self, stop: threading.Event) -> None:
        """Anchor evidence checkpoints until stopped; waits for the ledger if it is down."""
        delay = 1.0
        while not stop.is_set():
            try:
                empty = self.evidence is not None and self.evidence.size == 0
            except Exception as exc:  # the database away: the thread must outlive it
                log.warning("evidence anchoring waits for the database (%s)", exc_type(exc))
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if empty:
                stop.wait(0.5)  # nothing to anchor yet: send no transaction at all
                continue
            try:
                anchorer = self.anchorer()
            except Exception as exc:  # ledger down or not yet reachable: try again later
                log.warning("evidence anchoring not ready: %s", exc_type(exc))
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            anchorer.run(stop, poll=min(1.0, max(self.settings.poll_interval, 0.05)))
            return

    @property
    def operator_address(self) -> str:
        """The signing account's address (Anvil's first dev account when no keystore)."""
        if self._operator_address is None:
            account = self._account if self._account is not None else anvil_dev_account(0)
            self._operator_address = str(account.address)
        return self._operator_address

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background threads (daemons; :meth:`stop` ends them).

        Alone on SQLite: the indexer, batcher and anchorer at once. On a shared database:
        a role thread that keeps the leader lease (registry/service/leadership.py); while
        this replica leads it runs those three, while it follows it keeps its trees
        current from the shared index."""
        with self._lifecycle:
            if self._threads:
                return
            self._stop = threading.Event()
            if self.leadership.shared:
                self._threads = [threading.Thread(target=self._run_role, args=(self._stop,), name="zkid-role", daemon=True)]
            else:
                self._threads = self._leader_threads(self._stop)
            for t in self._threads:
                t.start()

    def _leader_threads(self, stop: threading.Event) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.indexer.run, args=(stop,), name="zkid-indexer", daemon=True),
            threading.Thread(target=self.batcher.run, args=(stop,), name="zkid-batcher", daemon=True),
        ]
        if self.evidence is not None:
            threads.append(threading.Thread(target=self._run_anchorer, args=(stop,), name="zkid-anchorer", daemon=True))
        return threads

    def _run_role(self, stop: threading.Event) -> None:
        """Lead while the lease is ours, follow otherwise; renew every third of a lease."""
        leading: tuple[threading.Event, list[threading.Thread]] | None = None
        log.info("replica %s: host %s, pid %d", self.leadership.holder, socket.gethostname(), os.getpid())
        tick = min(self.leadership.lease / 3, max(self.settings.poll_interval, 0.05))
        try:
            while not stop.is_set():
                is_leader = self.leadership.renew()
                if is_leader and leading is None:
                    log.info("this replica leads (term token %s)", self.leadership.token)
                    self.batcher.needs_reconcile = True  # what a former leader left in flight
                    self.batcher.stats.problem = None  # a previous term's failure (e.g. LostLeadership)
                    self._anchorer = None
                    own_stop = threading.Event()
                    leading = (own_stop, self._leader_threads(own_stop))
                    for t in leading[1]:
                        t.start()
                elif not is_leader and leading is not None:
                    log.warning("this replica lost the leader lease; following")
                    self._stop_leading(leading)
                    leading = None
                if not is_leader:
                    self._follow()
                stop.wait(tick)
        finally:
            if leading is not None:
                self._stop_leading(leading)
            self.leadership.release()

    @staticmethod
    def _stop_leading(leading: tuple[threading.Event, list[threading.Thread]]) -> None:
        leading[0].set()
        for t in leading[1]:
            t.join(30.0)

    def _follow(self) -> None:
        """A follower's tick: bring the in-memory trees up to what the leader indexed."""
        try:
            self.index.refresh()
        except Exception as exc:  # database away: health shows it; try again next tick
            log.warning("follower refresh failed (%s)", exc_type(exc))

    def stop(self, timeout: float = 30.0) -> None:
        with self._lifecycle:
            self._stop.set()
            for t in self._threads:
                t.join(timeout)
            self._threads = []

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Stop the threads, then checkpoint and close every store (after a clean stop the
        main ``.sqlite`` files alone hold everything: docs/operations.md)."""
        self.stop()
        self.index.close()
        self.outbox.close()
        self.nullifiers.close()
        self.admission.close()
        if self.evidence is not None:
            self.evidence.close()
        self.leadership.close()
        if self._dir_lock is not None:
            self._dir_lock.release()

    def __enter__(self) -> RegistryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(self) -> int:
        """Index up to the current head now; returns the number of events applied."""
        try:
            return self.indexer.sync_once()
        except LedgerUnavailable as exc:
            raise RegistryError("ledger_unavailable", str(exc)) from None

    def process_once(self, force: bool = False) -> int:
        """An index sync, one batcher pass (``force``: send every pending registration now,
        ignoring age and size), another index sync. Returns the number of registrations sent."""
        try:
            self.indexer.sync_once()
            sent = self.batcher.step(force)
            if sent:
                self.batcher.wait_sent()
            self.indexer.sync_once()
        except LedgerUnavailable as exc:
            raise RegistryError("ledger_unavailable", str(exc)) from None
        return sent

    # ------------------------------------------------------------------ basics

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def _known_group(self, group_id: object) -> int:
        """A group this replica can answer for: in the index *and* in its in-memory trees.
        A follower sees a group in the shared index before its next refresh loads the tree;
        until then the group is unknown here (404), as it is to one process before its
        indexer reaches the creation, instead of a KeyError (500)."""
        group = check_group_id(group_id)
        if self.index.group(group) is None or not self._has_tree(group):
            raise RegistryError("unknown_group", f"group {group} does not exist")
        return group

    def _has_tree(self, group: int) -> bool:
        try:
            self.index.tree(group)
        except KeyError:
            return False
        return True

    # ------------------------------------------------------------------ members

    def _administered(self, group_id: object) -> int:
        group = check_group_id(group_id)
        record = self.index.group(group)
        if record is None:
            raise RegistryError("unknown_group", f"group {group} does not exist")
        if record.admin.lower() != self.operator_address.lower():
            raise RegistryError("forbidden", f"this registry does not administer group {group}")
        return group

    def register(self, group_id: int, commitments: list[int]) -> list[MemberStatus]:
        """Accept registrations as the operator (no admission policy: the operator token's
        path, and the library's); durable in the outbox before this returns (all or none)."""
        return self._enqueue(self._administered(group_id), check_commitments(commitments))

    def _enqueue(self, group: int, values: list[int]) -> list[MemberStatus]:
        """Enqueue checked commitments of an administered group (the outbox checks again)."""
        rows = self.outbox.enqueue(group, values)
        return [MemberStatus(group, r.commitment, "pending", None, None, None, 0) for r in rows]

    def admit(
        self,
        group_id: int,
        commitments: list[int],
        *,
        admission_proof: Mapping[str, Any] | str | None = None,
        invite: str | None = None,
    ) -> list[MemberStatus]:
        """Accept registrations under the group's admission policy (docs/admission.md).

        ``zk`` and ``invite`` take exactly one commitment with its credential; the
        credential is claimed, then the commitment enqueued, and the claim released if the
        outbox refuses it (a duplicate, a full backlog): nothing is queued on a refusal and
        no credential is burnt by one."""
        group = self._administered(group_id)
        values = check_commitments(commitments)
        record = self.admission.get(group)
        if record is None:
            raise refusal("group_not_served")
        if record.policy == "open":
            return self._enqueue(group, values)
        if record.policy == "closed":
            raise refusal("admission_required", "only the operator registers in this group")
        if len(values) != 1:
            raise RegistryError("malformed", f"a {record.policy} registration carries exactly one commitment")
        if record.policy == "invite":
            if invite is None or admission_proof is not None:
                raise refusal("admission_required", "this group admits with an invite code")
            claimed = self.admission.claim_invite(group, invite)
            try:
                return self._enqueue(group, values)
            except BaseException:
                self.admission.release_invite(claimed)
                raise
        if admission_proof is None or invite is not None:
            raise refusal("admission_required", f"this group admits with a proof of membership in group {record.admission_group}")
        nullifier = self.zk_admission.claim(record, values[0], admission_proof)
        try:
            return self._enqueue(group, values)
        except BaseException:
            self.admission.release_nullifier(group, record.round, nullifier)
            raise

    def open_default_group(self) -> GroupAdmission:
        """`zkid up`'s local default: the deployment's group 0 is ``open`` unless the operator
        set another policy (docs/admission.md). Returns the group's record."""
        return self.admission.put_if_absent(GroupAdmission(self._manifest.default_group_id, "open"))

    def admission_info(self, group_id: int) -> GroupAdmission | None:
        return self.admission.get(check_group_id(group_id))

    def set_admission(self, record: GroupAdmission) -> GroupAdmission:
        """Operator action: set a group's admission policy (and whether it is a send group).
        The group must be administered by this registry; a ``zk`` group's admission group
        must exist and be administered by it too."""
        self._administered(record.group_id)
        if record.admission_group is not None:
            self._administered(record.admission_group)
            self._check_admission_group(record.admission_group)
        if record.policy != "closed" or record.send:
            # A group a zk group admits from must stay closed and not a send group:
            # opened, anyone could join it and mint admissions (Sybil resistance gone).
            users = [r.group_id for r in self.admission.records() if r.admission_group == record.group_id]
            if users:
                raise refusal("admission_group_in_use", f"group {record.group_id} admits to group(s) {', '.join(map(str, users))}")
        self.admission.put(record)
        return record

    def _check_admission_group(self, group_id: int) -> None:
        """A ``zk`` group's admission group must be ``closed`` (only the operator writes it)
        and not a send group (docs/admission.md)."""
        current = self.admission.get(group_id)
        if current is None or current.policy != "closed" or current.send:
            what = "no policy" if current is None else f"policy {current.policy}" + (", a send group" if current.send else "")
            raise refusal("admission_group_not_closed", f"group {group_id} has {what}")

    def create_invites(self, group_id: int, count: int, expires_at: float) -> list[str]:
        """Operator action: mint single-use invite codes of an ``invite`` group."""
        group = self._administered(group_id)
        record = self.admission.get(group)
        if record is None or record.policy != "invite":
            raise RegistryError("malformed", f"group {group}'s admission policy is not invite")
        return self.admission.create_invites(group, count, expires_at)

    def member_status(self, group_id: int, commitment: int) -> MemberStatus:
        group = check_group_id(group_id)
        value = _check_commitment(commitment)
        record = self.index.member(group, value)
        if record is not None:
            state, confirmations = item_state(record.block_number, self.index.head, self.settings.confirmations)
            return MemberStatus(group, value, state, record.index, record.tx_hash, record.block_number, confirmations)
        row = self.outbox.get(group, value)
        if row is not None and row.state in ("pending", "sent"):
            return MemberStatus(group, value, "pending", None, row.tx_hash, None, 0)
        if row is not None and row.state in ("included", "final"):
            # Mined when the batcher saw it, absent from the index: the index lags (being
            # rebuilt), or the chain rolled back below it (the batcher will reopen it), or
            # the member was removed on chain since.
            rolled_back = self.index.rolled_back_from()
            if rolled_back is not None and (row.block_number is None or row.block_number >= rolled_back):
                return MemberStatus(group, value, "pending", None, None, None, 0)
            leaf = self.index.last_leaf_of(group, value)
            if leaf is None or not leaf.removed:
                head = max(self.index.head or 0, row.block_number or 0)
                state, confirmations = item_state(row.block_number, head, self.settings.confirmations)
                return MemberStatus(group, value, state, None, row.tx_hash, row.block_number, confirmations)
        if row is not None and row.state == "failed":
            code = (row.last_error or "refused").split(":", 1)[0]
            return MemberStatus(group, value, "refused", None, row.tx_hash, None, 0, reason=code)
        if self.index.group(group) is None:
            raise RegistryError("unknown_group", f"group {group} does not exist")
        raise RegistryError("not_member", "not a member of this group")

    def merkle_proof(self, group_id: int, commitment: int) -> MerkleProof:
        """The LeanIMT proof of a member against the group's current root."""
        group = self._known_group(group_id)
        value = _check_commitment(commitment)
        with self.index.lock:
            tree = self.index.tree(group)
            position = tree.index_of(value)
            if position is not None:
                return tree.generate_proof(position)
        row = self.outbox.get(group, value)
        if row is not None and row.state in ("pending", "sent"):
            raise RegistryError("pending", "registered, not yet on chain: no Merkle proof yet")
        raise RegistryError("not_member", "not a member of this group")

    def members_page(self, group_id: int, start: int, limit: int) -> dict[str, Any]:
        """Leaves ``start..start+limit`` of a group in tree order (0: removed), with the
        root and size they belong to: public on the ledger; a client builds the tree from
        them and proves locally, without telling which member it is (docs/admission.md)."""
        group = self._known_group(group_id)
        with self.index.lock:
            tree = self.index.tree(group)
            root, size = tree.root, tree.size
            members = [str(tree.leaf(i)) for i in range(start, min(size, start + limit))]
        return {"group_id": group, "root": str(root), "size": size, "start": start, "members": members}

    # ------------------------------------------------------------------ groups and roots

    def _group_dict(self, group: int) -> dict[str, Any]:
        record = self.index.group(group)
        if record is None or not self._has_tree(group):  # see _known_group
            raise RegistryError("unknown_group", f"group {group} does not exist")
        admission = self.admission.get(group)
        with self.index.lock:
            tree = self.index.tree(group)
            root, size, depth = tree.root, tree.size, tree.depth
        return {
            "group_id": group,
            # The global group reference (chain_id, registry_contract, group_id) its
            # send and admission scopes name (docs/authorization.md: LZE2).
            "chain_id": self._manifest.chain_id,
            "registry_contract": self._manifest.address("ZkIdRegistry").lower(),
            "root": str(root),
            "size": size,
            "depth": depth,
            "block": self.index.cursor,
            "root_window": record.root_window,
            "epoch_length": self.settings.epoch_length,
            "message_limit": self.settings.message_limit,
            "clock_skew": self.settings.clock_skew,
            "admin": record.admin,
            "admission": None if admission is None else admission.to_dict(),
        }

    def group_info(self, group_id: int) -> dict[str, Any]:
        return self._group_dict(check_group_id(group_id))

    def groups(self) -> list[dict[str, Any]]:
        # A group whose tree this replica has not loaded yet is left out (see _known_group).
        return [self._group_dict(g.group_id) for g in self.index.groups() if self._has_tree(g.group_id)]

    def root_info(self, root: int) -> dict[str, Any]:
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < R:
            raise RegistryError("malformed", "a root is a field element below r")
        info = self.index.root_info(root, now=self.clock())
        if info is None:
            raise RegistryError("unknown_root", "this root was never a root of a group")
        return info

    def create_group(self, root_window: int | None = None, admission: Mapping[str, Any] | None = None) -> int:
        """Operator action: create a group administered by this registry, with its
        admission policy (``registry.service.admission.admission_from_json``; default ``zk``, which
        needs ``admission_group``); returns its id once the index knows it.

        Without ``admission``: ``zk`` with the registry's ``admission_group`` setting when
        one is configured; else the group gets no policy and is not served (registration
        only through the operator token, no send authorization) until
        :meth:`set_admission` gives it one."""
        from registry.service.admission import admission_from_json

        if admission is None and self.settings.admission_group is not None:
            admission = {"policy": "zk", "admission_group": self.settings.admission_group}
        if admission is not None:
            admission_from_json(-1, admission)  # refuse bad input before paying for a group
            if admission.get("admission_group") is not None:
                self._administered(admission["admission_group"])
                self._check_admission_group(admission["admission_group"])
        window = self._manifest.root_window if root_window is None else root_window
        window = check_int(window, "root_window", UINT64_MAX)
        try:
            group = self.operator().create_group(root_window=window)
        except LedgerUnavailable as exc:
            raise RegistryError("ledger_unavailable", str(exc)) from None
        except LedgerError as exc:
            raise RegistryError("ledger_error", f"the ledger refused the new group: {exc}", 502) from None
        if admission is not None:
            self.admission.put(admission_from_json(group, admission))
        deadline = time.monotonic() + 60
        while self.index.group(group) is None:
            if time.monotonic() > deadline:
                raise RegistryError("ledger_error", f"group {group} was created but is not indexed yet", 502)
            self.sync()
            if self.index.group(group) is None:
                time.sleep(0.05)
        return group

    # ------------------------------------------------------------------ authorization

    def _policy(self, group_id: int) -> GroupPolicy | None:
        if bounded_int(group_id, 0, MAX_GROUP_ID) is None:
            return None
        group = self.index.group(group_id)
        if group is None:
            return None
        s = self.settings
        # Send groups only (docs/admission.md): listed by the operator and administered by its
        # account; a group anyone else created on the contract gets group_not_served.
        admission = self.admission.get(group_id)
        served = admission is not None and admission.send and group.admin.lower() == self.operator_address.lower()
        return GroupPolicy(group_id, s.epoch_length, s.message_limit, s.clock_skew, served=served)

    def authorize(self, proof: Mapping[str, Any] | str, group_id: int, blob_digest: bytes) -> Decision:
        """The checks of docs/authorization.md (roots from the index, nullifiers claimed in
        ``nullifiers.sqlite``)."""
        self._purge_nullifiers()
        return self.authorizer.authorize(proof, group_id, blob_digest)

    def claim_nullifiers(self, relay: str, claims: Sequence[tuple[int, int, int]]) -> list[str]:
        """Claims ``(group_id, nullifier, epoch)`` for a trusted relay (its address; the
        envelope is checked by the caller, registry/service/nullifier_claims.py), each
        answered ``claimed``, ``reused``, ``unknown_group``, ``group_not_served`` or
        ``wrong_epoch`` (docs/api.md). Same store as :meth:`authorize`."""
        self._purge_nullifiers()
        s = self.settings
        epochs = set(acceptable_epochs(self.clock(), s.epoch_length, s.clock_skew))
        results = []
        for group_id, nullifier, epoch in claims:
            policy = self._policy(group_id)
            if policy is None or not policy.served:
                results.append("unknown_group" if policy is None else "group_not_served")
            elif epoch not in epochs:
                results.append("wrong_epoch")
            else:
                won = self.nullifiers.claim_as(group_id, nullifier, epoch, relay)
                results.append("claimed" if won else "reused")
        return results

    def _purge_nullifiers(self) -> None:
        now = self.clock()
        if now - self._last_purge < PURGE_INTERVAL or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            s = self.settings
            oldest = min(acceptable_epochs(now, s.epoch_length, s.clock_skew))
            for g in self.index.groups():
                self.nullifiers.purge(g.group_id, oldest)
        finally:
            self._purge_lock.release()

    # ------------------------------------------------------------------ operations

    def health(self) -> dict[str, Any]:
        if self.leadership.shared and self.leadership.current()["holder"] is None and self.leadership.last_error is not None:
            return self._health_database_down()
        head: int | None
        try:
            head = node_call(lambda: int(self._probe.eth.block_number))
        except Exception:
            head = None
        try:
            indexed = self.index.cursor
        except Exception as exc:  # the database is away: health says so (database_down)
            log.warning("health: the index cannot be read (%s)", exc_type(exc))
            indexed = None
        lag = None if head is None or indexed is None else max(head - indexed, 0)
        reasons: list[str] = []
        if head is None:
            reasons.append("ledger_down")
        elif lag is None or lag > max(10, 2 * self.settings.confirmations + 5):
            reasons.append("index_lagging")
        # The ledger writers' state counts only where they run (a follower's are stopped;
        # what they last saw is history: health is about now).
        leads = self.leadership.is_leader()
        if leads and self.indexer.stats.last_error is not None and head is not None:
            reasons.append("indexer_failing")
        if self.index_roots.stale():
            reasons.append("index_stale")  # authorizations are refused until the index catches up
        if leads and (anchoring := self._anchorer) is not None and anchoring.problem is not None:
            reasons.append(anchoring.problem)  # evidence_log_squatted / _unregistered / _inconsistent
        problem = self.batcher.stats.problem
        if leads and problem is not None and problem != "ledger_unavailable":
            reasons.append(f"batcher_{problem}")
        paused = self.batcher.stats.paused
        if leads and paused is not None:
            reasons.append(f"batcher_{paused}")
        pending: int | None
        unconfirmed: int | None
        try:
            pending = self.outbox.unsettled_count()
            unconfirmed = self.outbox.unconfirmed_count()
            oldest = self.outbox.oldest_unsettled()
        except Exception as exc:  # a broken outbox must show, not break the health check
            log.error("health: the outbox cannot be read (%s)", exc_type(exc))
            reasons.append("outbox_unreadable")
            pending = unconfirmed = None
            oldest = None
        if oldest is not None and self.clock() - oldest > self.stall_after:
            reasons.append("registrations_stalled")
        replica = self._replica_health(reasons)
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "region": self.region,
            "chain_id": self._manifest.chain_id,
            "ledger": "up" if head is not None else "down",
            "head_block": head,
            "indexed_block": indexed,
            "outbox_pending": pending,
            "outbox_unconfirmed": unconfirmed,
            "oldest_pending_seconds": None if oldest is None else max(0, int(self.clock() - oldest)),
            "lag_blocks": lag,
            "evidence": self._evidence_health(),
            **replica,
        }

    def _health_database_down(self) -> dict[str, Any]:
        """Health while the shared database does not answer: only what needs no database
        (one quick answer, not one timeout per store)."""
        try:
            head: int | None = node_call(lambda: int(self._probe.eth.block_number))
        except Exception:
            head = None
        reasons = ["database_down"] + (["ledger_down"] if head is None else [])
        return {
            "status": "degraded",
            "reasons": reasons,
            "region": self.region,
            "chain_id": self._manifest.chain_id,
            "ledger": "up" if head is not None else "down",
            "head_block": head,
            "indexed_block": None,
            "outbox_pending": None,
            "outbox_unconfirmed": None,
            "oldest_pending_seconds": None,
            "lag_blocks": None,
            "evidence": None,
            "role": "leader" if self.leadership.is_leader() else "follower",
            "replica": self.leadership.holder,
            "database": "down",
            "lease": {"holder": None, "token": None, "expires_in": None},
        }

    def _replica_health(self, reasons: list[str]) -> dict[str, Any]:
        """The replica's role, its database and the lease holder (docs/deployment.md)."""
        lead = self.leadership
        database = "sqlite"
        if lead.shared:
            lease = lead.current()
            database = "down" if lead.last_error is not None and lease["holder"] is None else "up"
            if database == "down":
                reasons.append("database_down")
        else:
            lease = None
        return {
            "role": "leader" if lead.is_leader() else "follower",
            "replica": lead.holder if lead.shared else None,
            "database": database,
            "lease": lease,
        }

    @property
    def stall_after(self) -> float:
        """Seconds after which a registration not yet on chain makes health degraded."""
        return max(60.0, 10 * self.settings.batch_interval, self.settings.batch_max_wait + 60.0)

    def _evidence_health(self) -> dict[str, Any] | None:
        if self.evidence is None:
            return None
        try:
            anchor = self.evidence.latest_anchor()
            size: int | None = self.evidence.size
        except Exception as exc:  # the database is away: health still answers
            log.warning("health: the evidence log cannot be read (%s)", exc_type(exc))
            anchor, size = None, None
        anchorer = self._anchorer
        return {
            "origin": self.evidence.origin,
            "log_id": "0x" + log_id(self.evidence.origin, self.evidence.verifier.public_key).hex(),
            "size": size,
            "anchored_size": None if anchor is None else anchor.tree_size,
            "problem": None if anchorer is None else anchorer.problem,
            # When a record not yet covered is anchored: within anchor_max_delay (or sooner,
            # after anchor_min_growth records), at most one anchor per anchor_interval.
            "anchor_max_delay": self.settings.anchor_max_delay,
            "anchor_due_in": None if anchorer is None else anchorer.due_in(),
        }

    def reindex(self) -> None:
        """Forget the whole index and rebuild it from the chain (in place: readers keep
        working, seeing the index fill up again). The outbox is untouched."""
        with self.indexer.lock:  # no sync may be half-way through while the index empties
            self.index.reset()
        self.sync()


def reindex(settings: Settings) -> dict[str, Any]:
    """Delete the chain index (``data_dir/index.sqlite``, or the shared PostgreSQL index)
    and rebuild it from the chain (no registry, or replica, may be running). Returns the
    indexed block, the number of events and of groups."""
    # The lock before the delete: a refused reindex must not touch a running registry's index.
    lock = DataDirLock(settings.data_dir, "reindex") if settings.database is None else None
    try:
        if settings.database is None:
            delete_index_files(settings.data_dir / INDEX_FILE)
        service = RegistryService.open(settings, dir_lock=lock)
        try:
            if settings.database is not None:
                service.index.reset()
            started = time.perf_counter()
            service.sync()
            return {
                "indexed_block": service.index.cursor,
                "events": service.index.event_count(),
                "groups": len(service.index.groups()),
                "seconds": round(time.perf_counter() - started, 3),
            }
        finally:
            service.close()
    finally:
        if lock is not None:
            lock.release()


def migrate_stores(settings: Settings, *, apply: bool = True) -> dict[str, tuple[int, int]]:
    """Each store's schema version before and the version this build knows, by store
    name; with ``apply`` every store is opened, which migrates it (`zkid migrate`).

    Raises :class:`registry.storage.migrations.SchemaTooNew` for a store ahead of this build."""
    from registry.evidence.log import MIGRATIONS as EVIDENCE_MIGRATIONS
    from registry.service.admission import MIGRATIONS as ADMISSION_MIGRATIONS
    from registry.service.authorization import NULLIFIER_MIGRATIONS
    from registry.service.index import MIGRATIONS as INDEX_MIGRATIONS
    from registry.service.outbox import MIGRATIONS as OUTBOX_MIGRATIONS
    from registry.storage.migrations import SchemaTooNew, schema_version, sqlite_schema_version

    from registry.storage.access_log import MIGRATIONS as ACCESS_MIGRATIONS
    from registry.storage.access_log import AccessLog

    known = {
        **({"leader": (LEADER_FILE, LEASE_MIGRATIONS[-1].version)} if settings.database is not None else {}),
        "index": (INDEX_FILE, INDEX_MIGRATIONS[-1].version),
        "outbox": (OUTBOX_FILE, OUTBOX_MIGRATIONS[-1].version),
        "nullifiers": (NULLIFIERS_FILE, NULLIFIER_MIGRATIONS[-1].version),
        "evidence": (EVIDENCE_FILE, EVIDENCE_MIGRATIONS[-1].version),
        "admission": (ADMISSION_FILE, ADMISSION_MIGRATIONS[-1].version),
        "access": (ACCESS_LOG_FILE, ACCESS_MIGRATIONS[-1].version),  # the connection log (web app)
    }
    sqlite = settings.database is None
    # Migrating: the lock before any store is opened (a running registry's files stay
    # untouched when it is refused). Checking: nothing but read-only reads.
    lock = DataDirLock(settings.data_dir, "registry") if apply and sqlite else None
    try:
        if sqlite:
            _check_sqlite_stores(settings.data_dir)
        report: dict[str, tuple[int, int]] = {}
        for name, (file_name, version) in known.items():
            path = settings.data_dir / file_name
            if sqlite and not path.exists():
                report[name] = (0, version)  # not created yet; --check must not create it
                continue
            if sqlite:
                found, where = sqlite_schema_version(path), str(path)
            else:
                db = store_database(settings, file_name, create=False)
                try:
                    found, where = schema_version(db), db.describe
                finally:
                    db.close()
            if found > version:
                raise SchemaTooNew(where, found, version)
            report[name] = (found, version)
        if apply:
            stores = open_stores(settings, time.time)
            for store in stores:
                store.close()
            AccessLog(store_database(settings, ACCESS_LOG_FILE, durable=False), settings.access_log_hours).close()
    finally:
        if lock is not None:
            lock.release()
    return report
