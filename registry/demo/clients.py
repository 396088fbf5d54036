"""The demo's clients of one region: admitted anonymously (docs/admission.md) and
registered in that region's registry, their group rebuilt from that region's ledger."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from registry.demo.regions import MESSAGE_LIMIT, SEND_GROUP, Region

if TYPE_CHECKING:
    from registry.demo.scenario import Scenario


def admit_and_register(sc: Scenario, region: Region, n: int) -> dict[str, Any]:
    """``n`` clients of ``region``: the admission (its own group and persons), then one
    fresh ZK-ID each; returns the region's admission summary."""
    with sc.phase("admission"):
        admission = _admission(sc, region, n)
    with sc.phase("register"):
        admitted, reused = _register(sc, region, admission)
    return {
        "policy": "zk",
        "admission_group": admission["group"],
        "checked_persons": len(admission["persons"]),
        "admitted": admitted,
        "second_registration": reused,
    }


def _admission(sc: Scenario, region: Region, n: int) -> dict[str, Any]:
    """The operator makes an admission group and gives the send group the ``zk`` policy;
    an account service (here: the demo) checks one person per client and adds one
    admission commitment each, through the operator's path."""
    from zk.identity import Identity

    from registry.service.admission import GroupAdmission

    service = region.service
    group_a = service.create_group(admission={"policy": "closed"})
    service.set_admission(GroupAdmission(SEND_GROUP, "zk", admission_group=group_a))
    sc.say(region.name, f"operator: admission group {group_a} (closed: written by the account service only); group {SEND_GROUP}: policy zk")
    persons = [Identity() for _ in range(n)]
    service.register(group_a, [p.commitment for p in persons])
    for p in persons:
        region.http.wait_until_anchored(group_a, p.commitment, timeout=120, interval=0.2)
    sc.say(region.name, f"accounts: {len(persons)} persons checked; one admission commitment each anchored in group {group_a}")
    return {"group": group_a, "persons": persons}


def _register(sc: Scenario, region: Region, admission: dict[str, Any]) -> tuple[int, str]:
    """Each client registers a fresh ZK-ID, admitted by an anonymous proof ("I am one of
    the checked persons", nothing more); then the group is rebuilt from the region's
    ledger. Returns the admission nullifiers and the code of a second registration."""
    from zk.identity import Identity

    from registry.client import RegistryClientError, group_from_ledger
    from registry.client.api import registry_of
    from registry.ledger.registry_contract import RegistryContract

    api = region.http
    region.identities = [Identity() for _ in admission["persons"]]
    for person, who in zip(admission["persons"], region.identities):
        started = time.perf_counter()
        api.register_admitted(SEND_GROUP, who.commitment, person, admission_group=admission["group"])
        sc.proofs += 1
        sc.proof_seconds += time.perf_counter() - started
    n = len(region.identities)
    sc.say(region.name, f"{n} fresh identities registered, each admitted by an anonymous proof (202, durable outbox)")
    try:
        api.register_admitted(SEND_GROUP, Identity().commitment, admission["persons"][0])
        reused = "accepted"
    except RegistryClientError as exc:
        reused = exc.code
    sc.say(region.name, f"the same person again, for a second ZK-ID in this round: refused ({reused})", "red")
    sc.check(f"{region.name}:admission_credential_used_once", reused == "admission_used")
    admitted = int(region.service.admission.nullifier_count())
    sc.check(f"{region.name}:one_admission_nullifier_per_registration", admitted == n)
    statuses = [api.wait_until_anchored(SEND_GROUP, i.commitment, timeout=120, interval=0.2) for i in region.identities]
    info = api.group(SEND_GROUP)
    blocks = sorted({s["block_number"] for s in statuses})
    sc.say("ledger", f"{region.name}: {len(statuses)} members anchored on chain {region.chain_id} in block(s) {blocks}")
    tree = group_from_ledger(RegistryContract(region.w3, region.manifest.address("ZkIdRegistry")), SEND_GROUP)
    rebuilt = str(tree.root) == info["root"] and tree.size == n
    sc.check(f"{region.name}:group_rebuilt_from_ledger", rebuilt)
    sc.say(region.name, f"group rebuilt from its ledger's events alone: size {tree.size}, root matches the registry: {rebuilt}")
    sc.check(f"{region.name}:message_limit_applied", int(info["message_limit"]) == MESSAGE_LIMIT)
    sc.check(f"{region.name}:group_names_its_ledger", registry_of(info) == region.ref)
    region.epoch_length = int(info["epoch_length"])
    region.message_limit = int(info["message_limit"])
    return admitted, reused
