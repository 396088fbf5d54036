"""The admission scope scheme: how an anonymous admission proof names *where* and *when*.

Implements the scope layout of ``docs/admission.md`` (the ``zk`` admission
policy). An admission proof is a Semaphore v4 proof (``zk.proof``) of membership in
the group's *admission group* (one admission commitment per checked person) whose

- ``message`` is the new identity commitment C being registered (a field element, so the
  proof cannot be moved to another commitment); and whose
- ``scope`` is a 256-bit integer laid out big-endian as (version 2, ``LZA2``)::

      bytes  0..3   b"LZA2"        magic and version of this scheme
      bytes  4..15  registry tag   96 bits: keccak256(uint256 chainId || address registry)[0:12]
      bytes 16..23  group id G     uint64, the group C is registered in
      bytes 24..31  round          uint64, the group's admission round (set by the operator)

The registry tag (:class:`zk.scope_layout.RegistryRef`, docs/authorization.md) binds the
proof to one registry deployment: an admission proof sent to one region's registry
cannot be replayed at another region's registry whose admission group has the same
members (an account service serving both), which would burn the person's nullifier there
and register a commitment they did not ask for. Version 1 (``LZA1``: group, round,
zeros) had no tag; such scopes raise :class:`AdmissionScopeVersionError`.

The Semaphore nullifier is ``Poseidon2(hash(scope), secret)`` (semaphore.circom), so one
admission identity produces exactly one nullifier per (G, round): a registry that refuses
a seen nullifier admits one commitment per checked person per round, and the nullifier
does not reveal which admission member it came from. The magic differs from the
relay-epoch scheme's ``LZE2`` (``zk.relay_scope``), so a send authorization can never be
read as an admission proof or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from zk.scope_layout import RegistryRef, pack_scope, scope_magic, unpack_scope

MAGIC = b"LZA2"
#: Earlier versions of the scheme, refused with :class:`AdmissionScopeVersionError`.
RETIRED_MAGICS = (b"LZA1",)


class AdmissionScopeError(ValueError):
    """A scope does not follow the admission scheme."""


class AdmissionScopeVersionError(AdmissionScopeError):
    """An admission scope of a retired version (``LZA1``): docs/admission.md."""


@dataclass(frozen=True)
class AdmissionScope:
    """One admission scope; ``registry_tag`` is :attr:`RegistryRef.tag` of the registry."""

    registry_tag: int
    group_id: int
    round: int

    @classmethod
    def of(cls, registry: RegistryRef, group_id: int, round_: int) -> AdmissionScope:
        """The admission scope of group ``group_id`` of ``registry``, round ``round_``."""
        return cls(registry.tag, group_id, round_)

    def encode(self) -> int:
        """The scope integer an admission proof is made over (layout in the module docstring)."""
        fields = (("registry_tag", self.registry_tag, 12), ("group_id", self.group_id, 8), ("round", self.round, 8))
        return pack_scope(MAGIC, fields, AdmissionScopeError)


def decode_admission_scope(scope: int) -> AdmissionScope:
    """Parse a scope integer; raise ``AdmissionScopeVersionError`` for an ``LZA1`` scope
    and ``AdmissionScopeError`` unless it is exactly in the layout (nothing is reduced)."""
    if scope_magic(scope) in RETIRED_MAGICS:
        raise AdmissionScopeVersionError("admission scope version LZA1 is no longer accepted (LZA2 binds the registry)")
    tag, group_id, round_ = unpack_scope(scope, MAGIC, (12, 8, 8), AdmissionScopeError, "an admission")
    return AdmissionScope(registry_tag=tag, group_id=group_id, round=round_)
