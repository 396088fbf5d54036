"""Evidence batches parsed and verified in worker processes (registry/evidence/verify_workers.py):
the same records and hashes as in-process, the same errors (position and code) when a record
fails, and the batch route over real HTTP with workers on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from registry.evidence.admission import EvidenceAdmission
from registry.evidence.log import BadSignature, check_records
from registry.evidence.verify_workers import VerifyWorkers
from registry.web.routes.evidence import evidence_router
from tests.registry.evidence.support import CHAIN_ID, RELAY, make_records, open_log
from tests.support.net import serve_app

RECORDS = make_records(70)  # above VerifyWorkers.min_batch


@pytest.fixture(scope="module")
def workers() -> Iterator[VerifyWorkers]:
    pool = VerifyWorkers(2)
    pool.start()
    yield pool
    pool.close()


def test_workers_return_what_the_process_computes(workers: VerifyWorkers) -> None:
    assert workers.check(RECORDS) == check_records(RECORDS)
    parsed = workers.parse_and_check([r.to_dict() for r in RECORDS])
    assert parsed is not None
    assert parsed == (RECORDS, check_records(RECORDS))


def test_a_bad_record_gets_the_in_process_error(workers: VerifyWorkers) -> None:
    bad = list(RECORDS)
    bad[66] = type(RECORDS[66])(RECORDS[66].record, RECORDS[67].signature)
    with pytest.raises(BadSignature) as caught:
        workers.check(bad)
    with pytest.raises(BadSignature) as expected:
        check_records(bad)
    assert caught.value.detail == expected.value.detail and caught.value.detail.startswith("record 66: ")
    assert workers.parse_and_check([r.to_dict() for r in bad]) is None  # the caller checks in-process
    assert workers.parse_and_check([*(r.to_dict() for r in RECORDS[:69]), {"record": {}}]) is None


def test_small_batches_and_no_workers_stay_in_process() -> None:
    none = VerifyWorkers(0)
    assert none.check(RECORDS) == check_records(RECORDS)
    assert none.parse_and_check([r.to_dict() for r in RECORDS]) is None
    assert none._pool is None  # noqa: SLF001 - nothing was started


def test_batch_route_with_workers(tmp_path: Path, workers: VerifyWorkers) -> None:
    log = open_log(tmp_path, "letro-zkid/workers/evidence")
    app = FastAPI()
    admission = EvidenceAdmission(CHAIN_ID, [RELAY], log, clock=lambda: 1_700_000_000.0)
    app.include_router(evidence_router(log, admission=admission, workers=workers))
    bad = dict(RECORDS[5].to_dict(), signature="0x" + RECORDS[6].signature.hex())
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/evidence/batch", json={"records": [*(x.to_dict() for x in RECORDS[:5]), bad,
                                                              *(x.to_dict() for x in RECORDS[6:])]})
        assert (r.status_code, r.json()["error"]["code"]) == (422, "bad_signature")
        assert "record 5" in r.json()["error"]["message"]
        assert log.size == 0  # nothing of a refused batch
        r = http.post("/v1/evidence/batch", json={"records": [x.to_dict() for x in RECORDS]})
        assert r.status_code == 201
        assert [x["index"] for x in r.json()["results"]] == list(range(70))
        assert [x["evidence_id"] for x in r.json()["results"]] == [x.record.evidence_id() for x in RECORDS]
    assert log.size == 70
    log.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_PARENT = """
import sys
from registry.evidence.verify_workers import VerifyWorkers
from tests.registry.evidence.support import make_records
workers = VerifyWorkers(2)
records = make_records(70)
assert workers.check(records)
print(*workers._pool._processes, flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed() -> None:
    """kill -9 of the server (no shutdown of the pool): its workers exit rather than wait
    on the pool's queue forever."""
    import signal
    import subprocess
    import sys

    from tests.support.wait import wait_until

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=root, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    try:
        wait_until(lambda: not any(_alive(p) for p in pids), 60, "the workers of a killed parent to exit")
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_dead_worker_is_replaced_for_the_next_batch() -> None:
    """A worker killed (kill -9) mid-run: that batch is checked in-process, and the next
    large batch gets fresh workers (a broken pool would fail, and fall back, forever)."""
    import signal

    from tests.support.wait import wait_until

    pool = VerifyWorkers(2)
    try:
        assert pool.check(RECORDS) == check_records(RECORDS)
        broken = pool._pool  # noqa: SLF001
        assert broken is not None
        os.kill(next(iter(broken._processes)), signal.SIGKILL)  # type: ignore[attr-defined]  # noqa: SLF001
        expected = check_records(RECORDS)
        # Each batch is right (in-process while the pool is broken); soon one has new workers.
        wait_until(lambda: pool.check(RECORDS) == expected and pool._pool not in (None, broken), 60,  # noqa: SLF001
                   "fresh workers after one died")
        fresh = pool._pool  # noqa: SLF001
        assert fresh is not None
        assert all(_alive(p) for p in fresh._processes)  # type: ignore[attr-defined]  # noqa: SLF001
    finally:
        pool.close()
    assert pool.check(RECORDS) == check_records(RECORDS)  # closed: in-process, no new pool
    assert pool._pool is None  # noqa: SLF001


class _CountingWorkers(VerifyWorkers):
    """Workers that count the batches handed to them (real workers underneath)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.batches = 0

    def parse_and_check(self, items: Any) -> Any:
        self.batches += 1
        return super().parse_and_check(items)


def test_an_unknown_signers_batch_costs_no_worker_time(tmp_path: Path) -> None:
    """Anyone may post a batch: one signed by a key the registry does not trust is refused
    (403 unknown_signer, as without workers) before any signature is checked, not after
    every core checked them all."""
    import hashlib

    from eth_account import Account

    from zk.evidence.record import EventType, EvidenceRecord, sign_record

    stranger = hashlib.sha256(b"not a registered relay").digest()
    issuer = Account.from_key(stranger).address
    foreign = [
        sign_record(EvidenceRecord(chain_id=CHAIN_ID, event=EventType.RELAY_ACCEPTANCE, event_time=1_700_000_000 + i,
                                   issuer=issuer, blob_digest=hashlib.sha256(b"x %d" % i).digest(), region="eu-west"),
                    stranger)
        for i in range(70)
    ]
    log = open_log(tmp_path, "letro-zkid/workers/unknown")
    workers = _CountingWorkers()
    app = FastAPI()
    admission = EvidenceAdmission(CHAIN_ID, [RELAY], log, clock=lambda: 1_700_000_000.0)
    app.include_router(evidence_router(log, admission=admission, workers=workers))
    try:
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/evidence/batch", json={"records": [x.to_dict() for x in foreign]})
            assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_signer")
            assert r.json()["error"]["message"].startswith("record 0: ")
            mixed = [*(x.to_dict() for x in RECORDS[:69]), foreign[0].to_dict()]
            r = http.post("/v1/evidence/batch", json={"records": mixed})
            assert (r.status_code, r.json()["error"]["code"]) == (403, "unknown_signer")
            assert workers.batches == 0 and workers._pool is None  # noqa: SLF001
            r = http.post("/v1/evidence/batch", json={"records": [x.to_dict() for x in RECORDS]})
            assert r.status_code == 201 and workers.batches == 1  # trusted signers: the workers
    finally:
        workers.close()
        log.close()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_default_workers_follow_the_cpus_this_process_may_use() -> None:
    """Pinned to one CPU (taskset, a container's cpuset): no workers, whatever the machine
    has; never more than ``max_processes``."""
    import subprocess
    import sys

    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "from registry.evidence.verify_workers import VerifyWorkers; print(VerifyWorkers().processes)")
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "0"
    assert VerifyWorkers().processes <= VerifyWorkers.max_processes
