"""Client SDK of a ZK-ID registry and its relays (registry/client/api.py, with its one HTTP
layer in registry/client/_http.py). Importing it loads neither web3 nor eth-account."""

from registry.client.api import (
    SLOT_SPENT_CODES,
    LedgerMismatchError,
    RegistryClient,
    RegistryClientError,
    RelaySendError,
    SendSlots,
    SlotsExhaustedError,
    acknowledge,
    acknowledge_anonymously,
    build_admission_proof,
    build_send_authorization,
    group_from_ledger,
    send_blob,
    tree_of_leaves,
)

__all__ = [
    "LedgerMismatchError",
    "RegistryClient",
    "RegistryClientError",
    "RelaySendError",
    "SLOT_SPENT_CODES",
    "SendSlots",
    "SlotsExhaustedError",
    "acknowledge",
    "acknowledge_anonymously",
    "build_admission_proof",
    "build_send_authorization",
    "group_from_ledger",
    "send_blob",
    "tree_of_leaves",
]
