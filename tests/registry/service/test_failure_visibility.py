"""Failures show: a batcher failing in a loop makes /v1/health `degraded` with a
machine-readable reason, counts the failure by kind in /metrics and logs a line without
values; a registration the ledger refuses for good is `refused` with its reason; an idle
ledger does not leave registrations counted as pending.

Real parts: an Anvil process, the service's threads and uvicorn on loopback. The faults
are real too: the operator's balance set to zero on the node (``anvil_setBalance``), a
group administered by another account, the outbox file overwritten with garbage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.ledger.accounts import anvil_dev_account
from registry.ledger.registry_contract import RegistryContract
from registry.ledger.tx import Transactor
from tests.registry.conftest import make_commitments
from tests.support.registry import running_registry


def _health(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/v1/health", timeout=30).json()
    return data


def _metric(url: str, name: str, label: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_insufficient_funds_degrades_health_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="registry")
    with running_registry(tmp_path / "data") as reg:
        operator = reg.service.operator_address
        balance = reg.anvil.w3.eth.get_balance(operator)
        reg.anvil.w3.provider.make_request("anvil_setBalance", [operator, hex(10**9)])  # type: ignore[arg-type]
        values = make_commitments(3, seed=61_000)
        with reg.client() as c:
            r = c.post("/v1/groups/0/members", json={"commitments": [str(v) for v in values]})
            assert r.status_code == 202
        reg.wait_until(
            lambda: "batcher_insufficient_funds" in _health(reg.url)["reasons"], 60, "degraded health"
        )
        health = _health(reg.url)
        assert health["status"] == "degraded" and health["outbox_pending"] == 3
        assert _metric(reg.url, "zkid_batcher_failures_total", 'kind="insufficient_funds"') >= 1
        assert _metric(reg.url, "zkid_health_degraded", 'reason="batcher_insufficient_funds"') == 1
        with reg.client() as c:
            assert {c.get(f"/v1/groups/0/members/{v}").json()["status"] for v in values} == {"pending"}
        reg.anvil.w3.provider.make_request("anvil_setBalance", [operator, hex(balance)])  # type: ignore[arg-type]
        reg.wait_included(0, values)
        reg.wait_until(lambda: _health(reg.url)["status"] == "ok", 60, "healthy again")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("registry")]
    assert any("insufficient_funds" in line for line in lines)
    assert not any(str(v) in line for v in values for line in lines)  # no commitment in a log


def test_a_permanent_refusal_is_visible_with_its_reason(tmp_path: Path) -> None:
    with running_registry(tmp_path / "data") as reg:
        # Group 0 handed to another admin behind the registry's back: the ledger refuses
        # every batch for it, for good.
        other = anvil_dev_account(5)
        contract = RegistryContract(reg.anvil.w3, reg.manifest.address("ZkIdRegistry"), reg.service.operator().tx)
        assert contract.tx is not None
        contract.tx.transact(contract.contract.functions.transferGroupAdmin(0, other.address))
        RegistryContract(
            reg.anvil.w3, contract.address, Transactor(reg.anvil.w3, other, poll_interval=0.01)
        ).tx.transact(contract.contract.functions.acceptGroupAdmin(0))  # type: ignore[union-attr]
        value = make_commitments(1, seed=62_000)[0]
        # The index may not have seen the new admin yet: the registration is accepted.
        reg.service.outbox.enqueue(0, [value])

        def refused() -> bool:
            with reg.client() as c:
                return bool(c.get(f"/v1/groups/0/members/{value}").json().get("status") == "refused")

        reg.wait_until(refused, 60, "the refusal to show")
        with reg.client() as c:
            body = c.get(f"/v1/groups/0/members/{value}").json()
        assert body["reason"] == "forbidden"
        assert _metric(reg.url, "zkid_batcher_failures_total", 'kind="refused"') >= 1


def test_a_corrupt_outbox_degrades_health(tmp_path: Path) -> None:
    with running_registry(tmp_path / "data") as reg:
        path = reg.service.outbox.path
        # Threads stopped first: closing a connection another thread is stepping is a
        # use-after-free inside CPython's sqlite3 (it crashed a CI worker once).
        reg.service.stop()
        reg.service.outbox.close()  # every connection closed; the next use reopens the file
        path.write_bytes(b"this is not a database" * 512)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        reg.service.start()
        reg.wait_until(lambda: "batcher_storage" in _health(reg.url)["reasons"], 60, "degraded health")
        health = _health(reg.url)
        assert health["status"] == "degraded" and "outbox_unreadable" in health["reasons"]
        assert _metric(reg.url, "zkid_batcher_failures_total", 'kind="storage"') >= 1


def test_an_idle_ledger_leaves_nothing_pending(tmp_path: Path) -> None:
    """With automine and nothing else happening, the last batch has one confirmation
    forever: it is mined (not pending), and health says so."""
    with running_registry(tmp_path / "data", confirmations=3) as reg:
        values = make_commitments(4, seed=63_000)
        with reg.client() as c:
            assert c.post("/v1/groups/0/members", json={"commitments": [str(v) for v in values]}).status_code == 202
        reg.wait_until(lambda: _health(reg.url)["outbox_unconfirmed"] == 4, 60, "the batch mined")
        health = _health(reg.url)
        assert health["outbox_pending"] == 0 and health["status"] == "ok"
        with reg.client() as c:
            assert c.get(f"/v1/groups/0/members/{values[0]}").json()["status"] == "included"
        reg.anvil.w3.provider.make_request("anvil_mine", [hex(2)])  # type: ignore[arg-type]
        reg.wait_until(lambda: _health(reg.url)["outbox_unconfirmed"] == 0, 60, "the batch final")
