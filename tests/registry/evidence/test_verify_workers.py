"""Evidence batches parsed and verified in worker processes (registry/evidence/verify_workers.py):
the same records and hashes as in-process, the same errors (position and code) when a record
fails, and the batch route over real HTTP with workers on."""

from __future__ import annotations

from collections.abc import Iterator
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
