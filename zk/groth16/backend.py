"""The interface shared by the Groth16 backends (BN254, Semaphore ceremony keys).

A backend verifies a Groth16 proof (Groth, "On the Size of Pairing-based
Non-interactive Arguments", EUROCRYPT 2016, ePrint 2016/260) against the verification
key of the official Semaphore ceremony for a tree depth. Implementations:
``zk.groth16.fast`` (groth16py, arkworks) and ``zk.groth16.reference`` (py_ecc, pure
Python, used to hold the fast path to account).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

from zk.groth16.encoding import Proof


B = TypeVar("B")


class ProcessDefault(Generic[B]):
    """One instance of a backend per process, built on first use (under a lock, so a key
    cache is never built twice)."""

    def __init__(self, make: Callable[[], B]) -> None:
        self._make = make
        self._value: B | None = None
        self._lock = threading.Lock()

    def get(self) -> B:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


class Groth16Error(ValueError):
    """Proving failed: bad witness, or a proof that does not verify."""


@runtime_checkable
class Groth16Backend(Protocol):
    """Verifies Groth16 proofs under the Semaphore ceremony key of a depth."""

    name: str

    def verify(self, depth: int, proof: Proof, public_signals: Sequence[int]) -> bool:
        """True iff ``proof`` is valid for ``public_signals`` under the depth's key.

        Never raises for a bad proof or bad signals (wrong count, out of range): returns
        False. Raises ``ValueError`` for a depth outside 1..32 and ``ArtifactError`` when
        the key cannot be loaded.
        """
        ...
