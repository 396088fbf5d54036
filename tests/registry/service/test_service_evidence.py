"""The service keeps an evidence log and anchors its checkpoints on the ledger by itself."""

from __future__ import annotations

import time
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from registry.ledger.anchor_contract import AnchorContract, log_id
from registry.service.facade import RegistryService
from registry.service.settings import Settings
from tests.support.wait import wait_until
from tests.registry.evidence.support import CountingRpcProxy
from zk.evidence import merkle
from zk.evidence.record import EventType, EvidenceRecord, SignedRecord, sign_record

RELAY = Account.create()


def signed(i: int, chain_id: int) -> SignedRecord:
    record = EvidenceRecord(
        chain_id=chain_id,
        event=EventType.SUBMISSION_ACCEPTANCE,
        event_time=1_800_000_000 + i,
        issuer=RELAY.address,
        blob_digest=i.to_bytes(32, "big"),
        region="eu-west",
    )
    return sign_record(record, RELAY.key)


def test_started_service_anchors_evidence(registry_settings: Settings, anvil: Any) -> None:
    settings = registry_settings.model_copy(
        update={"anchor_interval": 0.0, "anchor_min_growth": 5, "anchor_max_delay": 0.3}
    )
    service = RegistryService.open(settings)
    try:
        log = service.evidence
        assert log is not None and log.origin == "letro-zkid/local/evidence"
        chain_id = service.manifest.chain_id
        log.append_many([signed(i, chain_id) for i in range(7)])
        service.start()
        wait_until(lambda: (a := log.latest_anchor()) is not None and a.tree_size == 7, timeout=60)

        contract = AnchorContract(service.w3, service.manifest.address("EvidenceAnchor"))
        lid = log_id(log.origin, log.verifier.public_key)  # the id is bound to the log's key
        on_chain = contract.latest_anchor(lid)
        assert on_chain is not None and on_chain.tree_size == 7
        assert on_chain.root_hash == merkle.root_hash(log, 7)

        log.append_many([signed(i, chain_id) for i in range(7, 9)])  # fewer than min_growth: waits max_delay
        wait_until(lambda: (a := contract.latest_anchor(lid)) is not None and a.tree_size == 9, timeout=60)
        # The anchorer records the anchor in the log once its transaction is mined: after the chain has it.
        wait_until(lambda: service.health()["evidence"]["anchored_size"] == 9, timeout=60)
        health = service.health()
        assert health["evidence"] == {
            "origin": log.origin, "log_id": "0x" + lid.hex(), "size": 9, "anchored_size": 9, "problem": None,
            "anchor_max_delay": service.settings.anchor_max_delay, "anchor_due_in": None,
        }
    finally:
        service.close()


LATEST_ANCHOR = "0x" + keccak(b"latestAnchor(bytes32)")[:4].hex()


def test_anchorer_reads_the_ledger_only_when_an_anchor_is_due(registry_settings: Settings, anvil: Any) -> None:
    """The anchorer thread used to read ``latestAnchor`` on every poll
    (20 times a second here) while nothing was due. Counted by a proxy in front of Anvil."""
    with CountingRpcProxy(anvil.rpc_url) as proxy:
        settings = registry_settings.model_copy(update={
            "rpc_url": proxy.url, "poll_interval": 0.05,
            "anchor_interval": 0.0, "anchor_min_growth": 1000, "anchor_max_delay": 1.5,
        })
        service = RegistryService.open(settings)
        try:
            log = service.evidence
            assert log is not None
            anchor_address = service.manifest.address("EvidenceAnchor")
            log.append_many([signed(i, service.manifest.chain_id) for i in range(7)])
            service.start()
            # Few records: due only after max_delay; then one read of the ledger and one anchor.
            wait_until(lambda: (a := log.latest_anchor()) is not None and a.tree_size == 7, timeout=60)
            time.sleep(1.0)  # an observation window (many polls), not a timing assertion
            assert proxy.count("eth_call", anchor_address, LATEST_ANCHOR) == 1
            assert proxy.count("eth_sendRawTransaction") >= 1  # the proxy did carry the anchor
        finally:
            service.close()
