"""Groth16 over BN254 for Semaphore v4 proofs: encodings and two verifier backends.

- :mod:`zk.groth16.encoding`: strict parsing of the Semaphore/EVM packing, snarkjs
  JSON and the groth16py byte blob;
- :mod:`zk.groth16.fast`: groth16py (arkworks), proving and fast verification;
- :mod:`zk.groth16.reference`: py_ecc, pure-Python verification, slow but auditable.
"""

from __future__ import annotations

from zk.groth16.backend import Groth16Backend, Groth16Error
from zk.groth16.encoding import Proof, ProofEncodingError

__all__ = ["Groth16Backend", "Groth16Error", "Proof", "ProofEncodingError", "get_backend"]


def get_backend(name: str = "fast") -> Groth16Backend:
    """The process-wide backend called ``name``: ``"fast"`` (default) or ``"reference"``."""
    if name == "fast":
        from zk.groth16.fast import default_backend

        return default_backend()
    if name == "reference":
        from zk.groth16.reference import default_backend as reference_backend

        return reference_backend()
    raise ValueError(f"unknown Groth16 backend {name!r} (expected 'fast' or 'reference')")
