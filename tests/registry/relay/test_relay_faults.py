"""The relay under faults, as real processes on loopback (``zkid relay``, ``zkid up``).

- A registry frozen (SIGSTOP) while it authorizes a send: the relay answers 503
  ``authorization_unknown`` (the slot may be used up), not ``authorization_unavailable``
  (which invites a retry that the woken registry then refuses as ``nullifier_reused``);
  the SDK marks the slot spent; /v1/health says ``registry_unreachable`` and, once its
  evidence is refused for an unregistered key, ``evidence_unregistered_key``; /metrics
  counts the outcomes.
- Clients holding half-sent bodies: 408 ``request_timeout`` from the relay and the
  registry; they do not keep the relay from stopping on SIGTERM; a client disconnecting
  mid-body leaves no traceback in the relay's log.
- An ack cut off right after the blob's erase still leaves its access record queued.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import registry.relay.store as relay_store
from registry.client.api import RegistryClient, RelaySendError, SendSlots, build_send_authorization, send_blob
from registry.ledger.anvil import free_port
from registry.ledger.deploy import save_manifest
from registry.relay.app import Relay, RelaySettings
from tests.support.cli import ZKID, wait_serving
from tests.registry.test_e2e_faults import _register, _statuses, _wait, start_up
from zk.evidence.record import EventType, SignedRecord
from zk.identity import Identity

#: Raw clients are few and every socket read is bounded.
SOCKET_TIMEOUT = 30.0


@contextlib.contextmanager
def _relay(data_dir: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``zkid relay`` as a real process, its output in a file; ready once its port accepts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*ZKID, "relay", "--data-dir", str(data_dir), "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        wait_serving(proc, port, "the relay", log)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _partial_bodies(port: int, path: str, n: int) -> list[socket.socket]:
    """``n`` connections each announcing 60000 body bytes and sending one."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{".encode()
        )
        socks.append(s)
    return socks


def _answer(s: socket.socket) -> tuple[int, str]:
    """Status and error code of the server's answer (read until it closes the connection)."""
    data = b""
    with contextlib.closing(s):
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]["code"]


def test_registry_frozen_mid_authorization_answers_authorization_unknown(tmp_path: Path) -> None:
    reg_dir = tmp_path / "reg"
    reg_dir.mkdir()
    up = start_up(reg_dir, free_port(), free_port(), ZKID_BODY_TIMEOUT="2")
    try:
        alice = Identity("relay-fault-alice")
        _register(up.url, [alice.commitment])
        _wait(lambda: _statuses(up.url, [alice.commitment])[0] in ("included", "final"), 60, "anchoring", up)
        with RegistryClient(up.url) as registry:
            path = registry.merkle_proof(0, alice.commitment)
            home = registry.send_parameters(0)[0]

        # The registry too answers a body that does not arrive with 408.
        reg_port = int(up.url.rsplit(":", 1)[1])
        assert [_answer(s) for s in _partial_bodies(reg_port, "/v1/groups/0/members", 2)] == [(408, "request_timeout")] * 2

        relay_dir = tmp_path / "relay"
        args = ["--auth", "registry", "--registry-url", up.url, "--evidence-url", up.url, "--rate-limit", "10000",
                "--manifest", str(reg_dir / "deployment.json")]
        with _relay(relay_dir, *args) as (proc, port, log), httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=60
        ) as http:
            assert http.get("/v1/health").json()["reasons"] == []
            slots = SendSlots(tmp_path / "slots.sqlite")
            blob = b"sealed blob for a frozen registry"
            proof, _ = build_send_authorization(alice, path, 0, blob, time.time(), slots, registry=home)
            mailbox, capability = secrets.token_bytes(32), secrets.token_bytes(32)
            pickup_hash = hashlib.sha256(capability).digest()

            os.kill(up.proc.pid, signal.SIGSTOP)
            try:
                with pytest.raises(RelaySendError) as first:
                    send_blob(http, mailbox, pickup_hash, blob, 0, proof)
                health = http.get("/v1/health").json()
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)
            assert (first.value.status, first.value.code, first.value.slot_spent) == (503, "authorization_unknown", True)
            assert "new slot" in first.value.message
            assert health["status"] == "degraded" and "registry_unreachable" in health["reasons"]

            # Awake, the registry handles the request it had received: the nullifier is claimed,
            # so the slot was indeed used up and the same proof is refused.
            _wait(lambda: 'zkid_authorizations_total{reason="ok"} 1.0' in httpx.get(f"{up.url}/metrics").text,
                  60, "the late authorization", up)
            with pytest.raises(RelaySendError) as again:
                send_blob(http, mailbox, pickup_hash, blob, 0, proof)
            assert (again.value.status, again.value.code, again.value.slot_spent) == (409, "nullifier_reused", True)

            # The registry does not know the relay's key: its rejection record waits, health says so.
            _wait(lambda: "evidence_unregistered_key" in http.get("/v1/health").json()["reasons"], 60, "unknown_signer")
            _wait(lambda: "registry_unreachable" not in http.get("/v1/health").json()["reasons"], 60, "the probe")
            metrics = http.get("/metrics").text
            assert 'zkid_relay_sends_total{outcome="authorization_unknown"} 1.0' in metrics
            assert 'zkid_relay_sends_total{outcome="nullifier_reused"} 1.0' in metrics
            assert 'zkid_relay_degraded{reason="evidence_unregistered_key"} 1.0' in metrics
            assert "zkid_relay_evidence_pending 1.0" in metrics
            slots.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop
    finally:
        up.stop(signal.SIGINT)


def test_half_sent_bodies_time_out_and_do_not_block_shutdown(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    data_dir = tmp_path / "relay"
    save_manifest(data_dir, deployed.manifest)
    with _relay(data_dir, "--rpc-url", anvil.rpc_url, "--body-timeout", "2") as (proc, port, log):
        # Half-sent bodies are answered 408 request_timeout and their connections closed.
        assert [_answer(s) for s in _partial_bodies(port, "/v1/blobs", 3)] == [(408, "request_timeout")] * 3
        # A client that gives up mid-body: no traceback, no error line.
        for s in _partial_bodies(port, "/v1/blobs", 3):
            s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=30).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text

    # With the default 30 s body timeout, three held bodies do not keep SIGTERM from
    # stopping the relay (5 s of graceful shutdown), and its stores are closed cleanly.
    with _relay(data_dir, "--rpc-url", anvil.rpc_url) as (proc, port, log):
        held = _partial_bodies(port, "/v1/blobs", 3)
        try:
            time.sleep(0.5)  # let the server take the connections in (no assertion on time)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail("the relay did not stop on SIGTERM while clients held half-sent bodies")
            # Each held request is answered 503 shutting_down (retry), and the cancellation
            # at the end of the graceful shutdown is one line, not an application error.
            assert [_answer(s) for s in held] == [(503, "shutting_down")] * 3
        finally:
            for s in held:
                s.close()
        text = log.read_text()
        assert "Traceback" not in text and "Exception in ASGI application" not in text, text
        assert text.count("a request still open at shutdown was cancelled") == 3
    with contextlib.closing(sqlite3.connect(data_dir / "access.log.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM connections").fetchone()[0] > 0  # flushed at close


class _Killed(BaseException):
    """Stands for the process dying (SIGKILL) right after the erase: it cannot be timed for real."""


def test_ack_killed_after_the_erase_keeps_its_access_record(
    tmp_path: Path, anvil: Any, deployed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "relay"
    save_manifest(data_dir, deployed.manifest)
    # The log is never reached (nothing listens there; the sender thread is not started).
    settings = RelaySettings(data_dir=data_dir, rpc_url=anvil.rpc_url, evidence_url=f"http://127.0.0.1:{free_port()}")
    relay = Relay(settings)
    try:
        capability = secrets.token_bytes(32)
        blob = b"sealed blob acknowledged by a dying relay"
        digest = hashlib.sha256(blob).digest()
        blob_id = relay.store.put(secrets.token_bytes(32), hashlib.sha256(capability).digest(), blob, digest, time.time())
        real_erase = relay_store.erase_file

        def erase_then_die(path: Path) -> None:
            real_erase(path)
            raise _Killed()

        monkeypatch.setattr(relay_store, "erase_file", erase_then_die)
        with pytest.raises(_Killed):
            relay.ack(blob_id, capability)
        assert not relay.store.exists(blob_id) and not list((data_dir / relay_store.DIR_NAME).glob(f"{blob_id}*"))
    finally:
        relay.close()
    with contextlib.closing(sqlite3.connect(data_dir / "evidence_queue.sqlite")) as db:
        bodies = [body for (body,) in db.execute("SELECT body FROM evidence_queue")]
    records = [SignedRecord.from_json(body).record for body in bodies]
    assert [(r.event, r.blob_digest) for r in records] == [(EventType.CONTENT_ACCESS_TRACKING, digest)]


def test_ledger_frozen_under_a_local_relay_degrades_its_health(tmp_path: Path, anvil: Any, deployed: Any) -> None:
    """SIGSTOP of the ledger a local-mode relay reads: health ``degraded`` with
    ``ledger_down`` (the probe times out) until it answers again."""
    from tests.registry.relay.support import running_relay

    with running_relay(tmp_path / "relay", anvil.rpc_url, deployed.manifest, probe_interval=0.2, rate_limit=10_000) as (url, relay, _app), \
            httpx.Client(base_url=url, timeout=60) as http:
        _wait(lambda: relay.upstream_ok is True, 30, "the first probe")
        assert http.get("/v1/health").json()["reasons"] == []
        os.kill(anvil.process.proc.pid, signal.SIGSTOP)
        try:
            _wait(lambda: http.get("/v1/health").json()["reasons"] == ["ledger_down"], 30, "ledger_down")
            assert 'zkid_relay_degraded{reason="ledger_down"} 1.0' in http.get("/metrics").text
        finally:
            os.kill(anvil.process.proc.pid, signal.SIGCONT)
        _wait(lambda: http.get("/v1/health").json()["status"] == "ok", 30, "recovery")
