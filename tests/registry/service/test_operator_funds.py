"""The operator's money: the batcher never pays more than
``max_fee_per_gas`` per unit of gas nor commits more than ``spend_per_hour``; it pauses
(registrations still accepted, health says why) and resumes by itself. The backlog of a
group is bounded (503 ``backlog_full`` with ``Retry-After``). Batches stay within the
block's gas target so that they do not drive the base fee up.

Real Anvil (its base fee set with ``anvil_setNextBlockBaseFeePerGas``), the service's
threads and uvicorn on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.registry.conftest import make_commitments
from tests.support.registry import Registry, running_registry

GWEI = 10**9


def _health(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/v1/health", timeout=30).json()
    return data


def _set_base_fee(reg: Registry, wei: int) -> None:
    reg.anvil.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(wei)])  # type: ignore[arg-type]
    reg.anvil.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _register(reg: Registry, values: list[int]) -> httpx.Response:
    with reg.client() as c:
        return c.post("/v1/groups/0/members", json={"commitments": [str(v) for v in values]})


def test_fee_above_the_ceiling_pauses_then_resumes(tmp_path: Path) -> None:
    with running_registry(tmp_path / "data", max_fee_per_gas=50 * GWEI, max_backlog=5) as reg:
        operator = reg.service.operator_address
        _set_base_fee(reg, 400 * GWEI)
        nonce = reg.anvil.w3.eth.get_transaction_count(operator)
        values = make_commitments(5, seed=64_000)
        assert _register(reg, values).status_code == 202
        reg.wait_until(lambda: "batcher_fee_above_ceiling" in _health(reg.url)["reasons"], 60, "the pause")
        assert _health(reg.url)["outbox_pending"] == 5
        assert reg.anvil.w3.eth.get_transaction_count(operator, "pending") == nonce  # nothing sent
        # The backlog bound: a sixth registration waits outside.
        full = _register(reg, make_commitments(1, seed=64_100))
        assert full.status_code == 503 and full.json()["error"]["code"] == "backlog_full"
        assert int(full.headers["Retry-After"]) >= 1
        _set_base_fee(reg, 1 * GWEI)
        reg.wait_included(0, values)
        reg.wait_until(lambda: _health(reg.url)["status"] == "ok", 60, "healthy again")
        with reg.client() as c:
            tx_hash = c.get(f"/v1/groups/0/members/{values[0]}").json()["tx_hash"]
        assert reg.anvil.w3.eth.get_transaction(tx_hash)["maxFeePerGas"] <= 50 * GWEI


def test_hourly_budget_pauses_until_the_hour_has_passed(tmp_path: Path) -> None:
    with running_registry(tmp_path / "data") as reg:
        first = make_commitments(3, seed=65_000)
        assert _register(reg, first).status_code == 202
        reg.wait_included(0, first)
        # The first batch's real fee, once the batcher has recorded it from the receipt (it
        # records the batch's cap when sending: reading before the receipt is settled would
        # size the budget on the cap, about twice the fee, and no pause would come).
        with reg.client() as c:
            tx_hash = c.get(f"/v1/groups/0/members/{first[0]}").json()["tx_hash"]
        receipt = reg.anvil.w3.eth.get_transaction_receipt(tx_hash)
        cost = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        reg.wait_until(lambda: reg.service.outbox.spent_since(reg.clock() - 3600) == cost, 60, "the fee recorded")
        assert cost > 0
        # The operator's budget: more than one batch may cost at worst (the most it may pay
        # per gas is twice the base fee plus the tip, ~2.4x what it paid), less than two.
        reg.service.batcher.spend_per_hour = budget = cost * 26 // 10
        second = make_commitments(3, seed=65_100)
        assert _register(reg, second).status_code == 202
        reg.wait_until(lambda: "batcher_budget_exhausted" in _health(reg.url)["reasons"], 60, "the pause")
        with reg.client() as c:
            assert c.get(f"/v1/groups/0/members/{second[0]}").json()["status"] == "pending"
        spent = reg.service.outbox.spent_since(reg.clock() - 3600)
        assert spent == cost < budget  # nothing more was committed
        reg.clock.offset += 3601  # an hour later the budget is free again
        reg.wait_included(0, second)
        reg.wait_until(lambda: _health(reg.url)["status"] == "ok", 60, "healthy again")


def test_batches_stay_within_the_gas_target(tmp_path: Path) -> None:
    """A burst larger than one block: every batch uses at most half a block's gas, so the
    base fee does not climb batch after batch."""
    with running_registry(tmp_path / "data", batch_size=2000) as reg:
        base_before = int(reg.anvil.w3.eth.get_block("latest")["baseFeePerGas"])
        values = make_commitments(3_000, seed=66_000)
        for i in range(0, len(values), 1000):
            assert _register(reg, values[i : i + 1000]).status_code == 202
        reg.wait_until(lambda: _health(reg.url)["outbox_pending"] == 0, 180, "everything sent")
        w3 = reg.anvil.w3
        head = w3.eth.block_number
        used = []
        for n in range(1, head + 1):
            block = w3.eth.get_block(n)
            if block["transactions"]:
                used.append((int(block["gasUsed"]), int(block["gasLimit"])))
        assert used and all(g <= limit // 2 for g, limit in used)
        assert int(w3.eth.get_block("latest")["baseFeePerGas"]) <= base_before
