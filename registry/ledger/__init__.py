"""Access to the ledger (an EVM chain; locally an Anvil node) that holds the registry's truth.

Modules: ``anvil`` (local node processes), ``artifacts`` (compiled contracts, linking),
``accounts`` (keystore / dev signer), ``tx`` (sending, nonces, receipts, revert decoding),
``errors`` (typed exceptions, one per Solidity custom error), ``registry_contract`` and
``anchor_contract`` (typed wrappers), ``deploy`` (deployment and its manifest).
"""
