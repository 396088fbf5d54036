"""The admission scope scheme: how an anonymous admission proof names *where* and *when*.

Implements the scope layout of ``docs/admission.md`` (the ``zk`` admission
policy). An admission proof is a Semaphore v4 proof (``zk.proof``) of membership in
the group's *admission group* (one admission commitment per checked person) whose

- ``message`` is the new identity commitment C being registered (a field element, so the
  proof cannot be moved to another commitment); and whose
- ``scope`` is a 256-bit integer laid out big-endian as::

      bytes  0..3   b"LZA1"      magic and version of this scheme
      bytes  4..11  group id G   uint64, the group C is registered in
      bytes 12..19  round        uint64, the group's admission round (set by the operator)
      bytes 20..31  zero

The Semaphore nullifier is ``Poseidon2(hash(scope), secret)`` (semaphore.circom), so one
admission identity produces exactly one nullifier per (G, round): a registry that refuses
a seen nullifier admits one commitment per checked person per round, and the nullifier
does not reveal which admission member it came from. The magic differs from the
relay-epoch scheme's ``LZE1`` (``zk.relay_scope``), so a send authorization can never be
read as an admission proof or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"LZA1"
_U64 = 1 << 64


class AdmissionScopeError(ValueError):
    """A scope does not follow the admission scheme."""


@dataclass(frozen=True)
class AdmissionScope:
    group_id: int
    round: int

    def encode(self) -> int:
        """The scope integer an admission proof is made over (layout in the module docstring)."""
        for name, value in (("group_id", self.group_id), ("round", self.round)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
                raise AdmissionScopeError(f"{name} out of range")
        raw = MAGIC + self.group_id.to_bytes(8, "big") + self.round.to_bytes(8, "big") + bytes(12)
        return int.from_bytes(raw, "big")


def decode_admission_scope(scope: int) -> AdmissionScope:
    """Parse a scope integer; raise ``AdmissionScopeError`` unless it is exactly in the layout."""
    if isinstance(scope, bool) or not isinstance(scope, int) or not 0 <= scope < (1 << 256):
        raise AdmissionScopeError("scope is not a 256-bit unsigned integer")
    raw = scope.to_bytes(32, "big")
    if raw[:4] != MAGIC:
        raise AdmissionScopeError("scope is not an admission scope (bad magic)")
    if raw[20:] != bytes(12):
        raise AdmissionScopeError("scope has non-zero reserved bytes")
    return AdmissionScope(group_id=int.from_bytes(raw[4:12], "big"), round=int.from_bytes(raw[12:20], "big"))
