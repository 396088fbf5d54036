"""Pure core of the delivery-evidence transparency log (no storage, no network).

Modules:

- ``merkle``: RFC 9162 (CT v2) Merkle tree hashing, inclusion and consistency proofs.
- ``note``: C2SP signed-note (Ed25519) and tlog-checkpoint.
- ``proof_format``: C2SP tlog-proof, the offline inclusion proof.
- ``record``: evidence records (ETSI EN 319 522 events) signed as EIP-712 typed data.
- ``ack``: recipient acknowledgements (EdDSA-Poseidon or an anonymous Semaphore proof).
- ``bundle``: the evidence bundle a sender verifies offline.

The formats and the choices behind them are written down in ``docs/evidence.md``.
"""
