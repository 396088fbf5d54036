"""Admission benchmark: registrations/s through the ``zk`` policy next to ``open``.

On a throw-away Anvil node with the real contracts and a real ``RegistryService`` (real
SQLite stores, fsync per commit), threads not started:

1. an ``open`` group: ``--open`` single-commitment registrations through
   ``RegistryService.admit`` (the path of ``POST /v1/groups/{id}/members`` without the
   operator token), one call each;
2. an admission group (``closed``) of ``--persons`` checked persons, anchored; a ``zk``
   group admitting from it; one admission proof per person made beforehand (client side,
   timed separately), then the registrations through ``RegistryService.admit``: scope and
   message checks, root of the admission group, Groth16 verification, the nullifier
   claimed, the outbox enqueue.

Prints one JSON object. Usage:
    .venv/bin/python -m benchmarks.bench_admission [--open 2000] [--persons 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from registry.client.api import build_admission_proof
from zk.relay_scope import RegistryRef
from registry.ledger.accounts import anvil_dev_account
from registry.ledger.anvil import AnvilProcess
from registry.ledger.deploy import deploy_contracts, save_manifest
from registry.ledger.tx import Transactor
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from zk.field import R as _R
from zk.identity import Identity

_SPREAD = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276BF3A27251


def run(open_count: int, persons: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, AnvilProcess(["--gas-limit", "300000000"]) as node:
        data = Path(tmp)
        manifest = deploy_contracts(Transactor(node.w3, anvil_dev_account(0), poll_interval=0.005), region="bench")
        save_manifest(data, manifest)
        settings = Settings(data_dir=data, rpc_url=node.rpc_url, confirmations=1, batch_size=2000)
        service = RegistryService.open(settings)
        try:
            service.sync()
            group_open = service.create_group(admission={"policy": "open"})
            values = [((i + 1) * _SPREAD) % _R for i in range(open_count)]
            t0 = time.perf_counter()
            for v in values:
                service.admit(group_open, [v])
            open_seconds = time.perf_counter() - t0

            home = RegistryRef(manifest.chain_id, manifest.address("ZkIdRegistry"))  # what scopes name (LZA2)
            group_a = service.create_group(admission={"policy": "closed"})
            group_g = service.create_group(admission={"policy": "zk", "admission_group": group_a})
            people = [Identity(f"bench-person-{i}") for i in range(persons)]
            service.register(group_a, [p.commitment for p in people])
            service.process_once(force=True)
            fresh = [Identity(f"bench-fresh-{i}").commitment for i in range(persons)]
            t0 = time.perf_counter()
            proofs = [
                build_admission_proof(p, service.merkle_proof(group_a, p.commitment), group_g, 0, c, registry=home).to_dict()
                for p, c in zip(people, fresh)
            ]
            prove_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            for c, proof in zip(fresh, proofs):
                service.admit(group_g, [c], admission_proof=proof)
            zk_seconds = time.perf_counter() - t0
            assert service.admission.nullifier_count() == persons
        finally:
            service.close()
    return {
        "open": {"registrations": open_count, "seconds": round(open_seconds, 3), "per_second": round(open_count / open_seconds, 1)},
        "zk": {
            "registrations": persons,
            "seconds": round(zk_seconds, 3),
            "per_second": round(persons / zk_seconds, 1),
            "client_proof_seconds_each": round(prove_seconds / persons, 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=2000, help="registrations into the open group")
    parser.add_argument("--persons", type=int, default=40, help="checked persons, one zk registration each")
    args = parser.parse_args()
    print(json.dumps(run(args.open, args.persons), indent=2))


if __name__ == "__main__":
    main()
