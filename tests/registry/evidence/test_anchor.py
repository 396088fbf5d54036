"""Anchoring the evidence log on a real Anvil (run with ``-p tests.fixtures.anvil``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak

from registry.evidence.anchorer import Anchorer, AnchorRefused, LogSquatted, LogUnregistered
from registry.evidence.log import EvidenceLog, load_or_create_log_key
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.web.app import create_app
from registry.ledger import errors as E
from registry.ledger.anvil import make_web3
from registry.ledger.tx import Transactor
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from tests.support.clock import FakeClock
from tests.support.wait import wait_until
from tests.support.net import serve_app
from tests.registry.evidence.support import CountingRpcProxy, Relay, make_records, open_log

ROOT = Path(__file__).resolve().parents[3]
RECORDS = make_records(40)


@pytest.fixture
def contract(anvil: Any, deployed: Any, chain: Any, make_transactor: Callable[[int], Transactor]) -> AnchorContract:
    return AnchorContract(anvil.w3, deployed.anchor.address, make_transactor(3))


def _origin(tmp_path: Path) -> str:
    return f"letro-zkid/t{abs(hash(str(tmp_path))) % 10**8}/evidence"


def _register(deployed: Any, log: EvidenceLog, operator: str) -> bytes:
    """The registrar (the deployer) registers the log's key-bound id for ``operator``."""
    return bytes(deployed.anchor.register_log(log.origin, log.verifier.public_key, owner=operator))


def test_anchors_at_size_and_time_thresholds(tmp_path: Path, contract: AnchorContract, deployed: Any) -> None:
    origin = _origin(tmp_path)
    log = open_log(tmp_path, origin)
    lid = _register(deployed, log, contract.tx.address)  # type: ignore[union-attr]
    assert lid == log_id(origin, log.verifier.public_key)
    clock = FakeClock(1_000_000)
    anchorer = Anchorer(log, contract, min_interval=10, min_growth=5, max_delay=100, clock=clock)
    assert anchorer.anchor_once().status == "empty"
    log.append_many(RECORDS[:3])
    assert anchorer.anchor_once().status == "not_due"
    assert contract.latest_anchor(lid) is None
    log.append_many(RECORDS[3:5])
    out = anchorer.anchor_once()
    assert out.status == "anchored" and out.anchor is not None
    onchain = contract.latest_anchor(lid)
    assert onchain is not None and (onchain.tree_size, onchain.root_hash) == (5, log.root(5))
    assert (out.anchor.block_number, out.anchor.block_time) == (onchain.block_number, onchain.timestamp)
    assert log.anchor_covering(4) == out.anchor and log.anchor_covering(5) is None
    log.append_many(RECORDS[5:15])
    assert anchorer.anchor_once().detail == "min_interval"  # at most one tx per interval
    clock.advance(11)
    assert anchorer.anchor_once().anchor.tree_size == 15  # type: ignore[union-attr]
    log.append(RECORDS[15])
    clock.advance(11)
    assert anchorer.anchor_once().status == "not_due"  # growth 1 < 5, delay not reached
    clock.advance(100)
    assert anchorer.anchor_once().anchor.tree_size == 16  # type: ignore[union-attr]
    assert anchorer.anchor_once(force=True).status == "up_to_date"
    assert [a.tree_size for a in contract.anchors(lid)] == [16, 15, 5]


def test_rewritten_log_is_never_anchored(tmp_path: Path, contract: AnchorContract, deployed: Any) -> None:
    origin = _origin(tmp_path)
    log = open_log(tmp_path, origin)
    lid = _register(deployed, log, contract.tx.address)  # type: ignore[union-attr]
    log.append_many(RECORDS[:6])
    Anchorer(log, contract, min_growth=1).anchor_once(force=True)
    log.close()
    # Behind the anchorer's back: the database is replaced by a log with other history
    # (same key, same origin), longer than the anchored one.
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "evidence.sqlite") + suffix).unlink(missing_ok=True)
    forged = open_log(tmp_path, origin)
    forged.append_many([RECORDS[1], RECORDS[0], *RECORDS[2:10]])
    anchorer = Anchorer(forged, contract, min_growth=1)
    with pytest.raises(AnchorRefused, match="not consistent"):
        anchorer.anchor_once(force=True)
    onchain = contract.latest_anchor(lid)
    assert onchain is not None and onchain.tree_size == 6
    assert contract.log_info(lid).anchor_count == 1
    # A shorter log than the ledger's anchor is refused too.
    forged.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "evidence.sqlite") + suffix).unlink(missing_ok=True)
    short = open_log(tmp_path, origin)
    short.append_many(RECORDS[:3])
    with pytest.raises(AnchorRefused):
        Anchorer(short, contract, min_growth=1).anchor_once(force=True)
    assert contract.log_info(lid).anchor_count == 1


def test_sigkill_between_append_and_anchor(tmp_path: Path, contract: AnchorContract, deployed: Any) -> None:
    origin = _origin(tmp_path)
    key = load_or_create_log_key(tmp_path, origin).verifier().public_key
    lid = bytes(deployed.anchor.register_log(origin, key, owner=contract.tx.address))  # type: ignore[union-attr]
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tests.registry.evidence.support import make_records, open_log
        log = open_log(Path({str(tmp_path)!r}), {origin!r})
        for r in make_records(25):
            log.append(r)
        print("appended", log.size, flush=True)
        time.sleep(120)  # the anchorer would run here; it is killed first
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["appended", "25"]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert contract.latest_anchor(lid) is None
    log = open_log(tmp_path, origin)
    assert log.size == 25
    for i, r in enumerate(make_records(25)):
        assert log.get(r.record.evidence_id()).index == i
    out = Anchorer(log, contract, min_growth=10).anchor_once()
    assert out.status == "anchored"
    onchain = contract.latest_anchor(lid)
    assert onchain is not None and (onchain.tree_size, onchain.root_hash) == (25, log.root())


def test_ledger_down_then_back(tmp_path: Path, anvil: Any, contract: AnchorContract, deployed: Any) -> None:
    origin = _origin(tmp_path)
    relay = Relay(anvil.process.port)
    relay.start()
    try:
        tx = Transactor(make_web3(relay.url, timeout=10, retry=False), anvil_dev_account(4), poll_interval=0.01)
        via_relay = AnchorContract(tx.w3, contract.address, tx)
        log = open_log(tmp_path, origin)
        lid = _register(deployed, log, tx.address)
        log.append_many(RECORDS[:7])
        sleeps: list[float] = []
        anchorer = Anchorer(log, via_relay, min_growth=1, retries=2, backoff=0.01, sleep=sleeps.append)
        relay.stop()
        out = anchorer.anchor_once()
        assert out.status == "unavailable"
        assert sleeps == [0.01, 0.02]  # retried with exponential backoff
        assert contract.latest_anchor(lid) is None and log.latest_anchor() is None
        relay.start()
        out = anchorer.anchor_once()
        assert out.status == "anchored" and out.anchor is not None and out.anchor.tree_size == 7
        onchain = contract.latest_anchor(lid)
        assert onchain is not None and onchain.root_hash == log.root(7)
    finally:
        relay.stop()


def test_run_loop_anchors_until_stopped(tmp_path: Path, contract: AnchorContract, deployed: Any) -> None:
    origin = _origin(tmp_path)
    log = open_log(tmp_path, origin)
    lid = _register(deployed, log, contract.tx.address)  # type: ignore[union-attr]
    stop = threading.Event()
    anchorer = Anchorer(log, contract, min_interval=0, min_growth=4)
    thread = threading.Thread(target=anchorer.run, args=(stop,), kwargs={"poll": 0.02}, daemon=True)
    thread.start()
    try:
        log.append_many(RECORDS[:4])
        wait_until(lambda: log.latest_anchor() is not None)
        log.append_many(RECORDS[4:9])
        wait_until(lambda: log.latest_anchor().tree_size == 9)  # type: ignore[union-attr]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert [a.tree_size for a in contract.anchors(lid)] == [9, 4]


def test_polls_before_an_anchor_is_due_do_not_read_the_ledger(
    tmp_path: Path, anvil: Any, contract: AnchorContract, deployed: Any
) -> None:
    """Deciding "not due" takes no ledger call; counted by a proxy."""
    origin = _origin(tmp_path)
    log = open_log(tmp_path, origin)
    _register(deployed, log, contract.tx.address)  # type: ignore[union-attr]
    clock = FakeClock(1_000_000)
    with CountingRpcProxy(anvil.rpc_url) as proxy:
        tx = Transactor(make_web3(proxy.url, timeout=10, retry=False), anvil_dev_account(3), poll_interval=0.01)
        counted = AnchorContract(tx.w3, contract.address, tx)
        anchorer = Anchorer(log, counted, min_interval=10, min_growth=5, max_delay=100, clock=clock)
        log.append_many(RECORDS[:3])
        for _ in range(200):
            assert anchorer.anchor_once().status == "not_due"
        assert sum(proxy.calls.values()) == 0
        log.append_many(RECORDS[3:5])
        assert anchorer.anchor_once().status == "anchored"
        for _ in range(200):  # anchored, nothing new: up to date without asking the ledger
            assert anchorer.anchor_once().status == "up_to_date"
        log.append_many(RECORDS[5:6])
        for _ in range(200):  # min_interval, then too little growth: not due, no ledger call
            assert anchorer.anchor_once().status == "not_due"
            clock.advance(0.1)
        assert proxy.count("eth_call", contract.address, "0x" + keccak(b"latestAnchor(bytes32)")[:4].hex()) == 1


def test_unregistered_or_squatted_log_id_is_refused_without_sending(
    tmp_path: Path, anvil: Any, contract: AnchorContract, deployed: Any, make_transactor: Callable[[int], Transactor]
) -> None:
    """A log id this account cannot anchor is a standing, named problem
    found with view calls; no transaction is attempted."""
    log = open_log(tmp_path, _origin(tmp_path))
    log.append_many(RECORDS[:4])
    with CountingRpcProxy(anvil.rpc_url) as proxy:
        tx = Transactor(make_web3(proxy.url, timeout=10, retry=False), anvil_dev_account(3), poll_interval=0.01)
        anchorer = Anchorer(log, AnchorContract(tx.w3, contract.address, tx), min_growth=1)
        with pytest.raises(LogUnregistered, match="not registered"):
            anchorer.anchor_once(force=True)
        assert anchorer.problem == "evidence_log_unregistered"
        # The registrar registers the id for someone else, who anchors the largest size.
        squatter = AnchorContract(anvil.w3, contract.address, make_transactor(7))
        lid = deployed.anchor.register_log(log.origin, log.verifier.public_key, owner=squatter.tx.address)  # type: ignore[union-attr]
        squatter.anchor(lid, 2**64 - 1, bytes(range(32)))
        with pytest.raises(LogSquatted, match="not one of its operators"):
            anchorer.anchor_once(force=True)
        assert anchorer.problem == "evidence_log_squatted"
        assert proxy.count("eth_sendRawTransaction") == proxy.count("eth_estimateGas") == 0
    assert log.latest_anchor() is None


def _serve_service(settings: Settings) -> Any:
    """An opened service (threads not started) and its app, to serve with ``serve_app``. Not
    the shared ``registry`` fixture: these tests use the session Anvil and act on the
    ledger between opening the service and starting its threads."""
    service = RegistryService.open(settings)
    return service, serve_app(create_app(service, settings))


def test_service_log_name_cannot_be_squatted(registry_settings: Settings, anvil: Any, deployed: Any,
                                             make_transactor: Callable[[int], Transactor]) -> None:
    """Someone else tries to take `letro-zkid/<region>/evidence`
    first and anchor size 2^64-1; the registry's own log still anchors and its health is ok."""
    settings = registry_settings.model_copy(update={"anchor_interval": 0.0, "anchor_min_growth": 3})
    service, server = _serve_service(settings)
    try:
        log = service.evidence
        assert log is not None and log.origin == "letro-zkid/local/evidence"
        squatter_tx = make_transactor(7)
        squatter = AnchorContract(anvil.w3, deployed.anchor.address, squatter_tx)
        for key in (log.verifier.public_key, bytes(range(32))):  # the log's (public) key, or its own
            with pytest.raises(E.CallerIsNotRegistrar):
                squatter.register_log(log.origin, key)
            with pytest.raises(E.LogNotRegistered):
                squatter.anchor(log_id(log.origin, key), 2**64 - 1, bytes(range(32)))
        log.append_many(RECORDS[:5])
        with server as url:
            service.start()
            wait_until(lambda: (a := log.latest_anchor()) is not None and a.tree_size == 5, timeout=60)
            lid = log_id(log.origin, log.verifier.public_key)
            onchain = deployed.anchor.latest_anchor(lid)
            assert onchain is not None and (onchain.tree_size, onchain.root_hash) == (5, log.root(5))
            evidence = httpx.get(f"{url}/v1/health").json()["evidence"]
            assert (evidence["log_id"], evidence["problem"], evidence["anchored_size"]) == ("0x" + lid.hex(), None, 5)
    finally:
        service.close()


def test_service_reports_a_squatted_log_id_in_health(registry_settings: Settings, anvil: Any, deployed: Any,
                                                     make_transactor: Callable[[int], Transactor]) -> None:
    """If the log's id is nevertheless someone else's (here the registrar
    gave it away), /v1/health says `evidence_log_squatted`; the anchorer sends nothing and
    re-checks rarely instead of retrying at its poll rate for ever."""
    with CountingRpcProxy(anvil.rpc_url) as proxy:
        settings = registry_settings.model_copy(update={
            "rpc_url": proxy.url, "anchor_interval": 0.0, "anchor_min_growth": 1, "poll_interval": 0.05,
        })
        service, server = _serve_service(settings)
        try:
            log = service.evidence
            assert log is not None
            squatter = AnchorContract(anvil.w3, deployed.anchor.address, make_transactor(7))
            lid = deployed.anchor.register_log(log.origin, log.verifier.public_key, owner=squatter.tx.address)  # type: ignore[union-attr]
            squatter.anchor(lid, 2**64 - 1, bytes(range(32)))
            log.append_many(RECORDS[:5])
            with server as url:
                service.start()

                def reasons() -> list[str]:
                    return list(httpx.get(f"{url}/v1/health").json()["reasons"])

                wait_until(lambda: "evidence_log_squatted" in reasons(), timeout=60)
                time.sleep(1.0)  # an observation window (about 20 polls), not a timing assertion
                health = httpx.get(f"{url}/v1/health").json()
                assert health["status"] == "degraded" and "evidence_log_squatted" in health["reasons"]
                assert health["evidence"]["problem"] == "evidence_log_squatted"
                assert health["evidence"]["anchored_size"] is None
                is_operator = "0x" + keccak(b"isOperator(bytes32,address)")[:4].hex()
                assert proxy.count("eth_call", deployed.anchor.address, is_operator) == 1
                assert proxy.count("eth_sendRawTransaction") == proxy.count("eth_estimateGas") == 0
        finally:
            service.close()


def test_anchorer_logs_failure_types_only(
    tmp_path: Path, contract: AnchorContract, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Privacy (registry/_utils/logs.py): whatever an anchoring failure's text quotes, the
    anchorer logs its type (or its refusal code) only, and no traceback."""
    secret = "4242424242424242424242424242424242"
    log = open_log(tmp_path, _origin(tmp_path))
    anchorer = Anchorer(log, contract, min_growth=1, retries=1, backoff=0.0, sleep=lambda _s: None)
    stop = threading.Event()
    faults: list[Exception] = [
        E.LedgerUnavailable(f"node down while sending {secret}"),  # retried, then "unavailable"
        AnchorRefused(f"checkpoint of {secret} is not consistent"),
        RuntimeError(f"unexpected {secret}"),
    ]

    def fail() -> None:
        fault = faults.pop(0)
        if not faults:
            stop.set()
        raise fault

    monkeypatch.setattr(anchorer, "check_registration", lambda: None)
    monkeypatch.setattr(anchorer, "_anchor_once", lambda force: anchorer._with_retries("anchoring", fail))
    with caplog.at_level(logging.DEBUG):
        anchorer.run(stop, poll=0.01)
    log.close()
    assert not faults
    assert secret not in caplog.text
    assert all(r.exc_info is None and r.exc_text is None for r in caplog.records)
    for expected in ("LedgerUnavailable", "evidence_log_inconsistent", "anchoring failed: RuntimeError"):
        assert expected in caplog.text
