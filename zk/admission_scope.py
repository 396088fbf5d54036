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

from zk.scope_layout import pack_scope, unpack_scope

MAGIC = b"LZA1"


class AdmissionScopeError(ValueError):
    """A scope does not follow the admission scheme."""


@dataclass(frozen=True)
class AdmissionScope:
    group_id: int
    round: int

    def encode(self) -> int:
        """The scope integer an admission proof is made over (layout in the module docstring)."""
        return pack_scope(MAGIC, (("group_id", self.group_id, 8), ("round", self.round, 8)), AdmissionScopeError)


def decode_admission_scope(scope: int) -> AdmissionScope:
    """Parse a scope integer; raise ``AdmissionScopeError`` unless it is exactly in the layout."""
    group_id, round_ = unpack_scope(scope, MAGIC, (8, 8), AdmissionScopeError, "an admission")
    return AdmissionScope(group_id=group_id, round=round_)
