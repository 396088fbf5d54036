"""The relay-epoch scope scheme: how a send authorization encodes *whose group*, *when*
and *which slot*.

A send authorization is a Semaphore v4 proof (``zk.proof``) whose

- ``message`` is the blob's SHA-256 digest read as a big-endian 256-bit integer, so the
  proof cannot be moved to another blob; and whose
- ``scope`` is a 256-bit integer laid out big-endian as (version 2, ``LZE2``)::

      bytes  0..3   b"LZE2"        magic and version of this scheme
      bytes  4..15  registry tag   96 bits: keccak256(uint256 chainId || address registry)[0:12]
      bytes 16..22  group id       uint56 (group ids are at most 2**53 - 1)
      bytes 23..27  epoch          uint40, floor(unix_time / epoch_length)
      bytes 28..31  slot           uint32, 0 <= slot < the group's per-epoch limit

The registry tag (:class:`zk.scope_layout.RegistryRef`) binds the scope to one registry
deployment, so the scope names a *global* group reference (chain id, registry contract,
group id): a proof for group 0 of one region's registry is refused (``wrong_registry``)
as group 0 of another, and one identity's nullifiers in two registries never coincide.
Version 1 (``LZE1``: group uint64, epoch uint64, slot uint32, zeros) named the group id
only; such scopes raise :class:`ScopeVersionError` (``scope_version_unsupported``).

The Semaphore nullifier is ``Poseidon2(hash(scope), secret)`` (semaphore.circom), so one
identity produces exactly one nullifier per (registry, group, epoch, slot): a registry or
relay that refuses a seen nullifier lets each member send at most ``limit`` blobs per
epoch, while two different members never collide and nothing links a nullifier to a
member. The full scheme (layout, migration, epoch length, limits, clock skew) is written
down in ``docs/authorization.md`` for other implementations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from math import ceil

from zk.scope_layout import RegistryRef as RegistryRef  # re-exported: callers bind scopes to it
from zk.scope_layout import pack_scope, scope_magic, unpack_scope

MAGIC = b"LZE2"
#: Earlier versions of the scheme, refused with :class:`ScopeVersionError`.
RETIRED_MAGICS = (b"LZE1",)
#: Field widths in bytes after the magic: registry tag, group id, epoch, slot.
WIDTHS = (12, 7, 5, 4)

class ScopeError(ValueError):
    """A scope does not follow the relay-epoch scheme."""


class ScopeVersionError(ScopeError):
    """A relay-epoch scope of a retired version (``LZE1``): docs/authorization.md "Migration"."""


@dataclass(frozen=True)
class RelayScope:
    """One relay-epoch scope; ``registry_tag`` is :attr:`RegistryRef.tag` of the group's registry."""

    registry_tag: int
    group_id: int
    epoch: int
    slot: int

    @classmethod
    def of(cls, registry: RegistryRef, group_id: int, epoch: int, slot: int) -> RelayScope:
        """The scope of group ``group_id`` of ``registry`` (a global group reference)."""
        return cls(registry.tag, group_id, epoch, slot)

    def encode(self) -> int:
        """The scope integer a client proves over (layout in the module docstring)."""
        values = (self.registry_tag, self.group_id, self.epoch, self.slot)
        names = ("registry_tag", "group_id", "epoch", "slot")
        return pack_scope(MAGIC, tuple(zip(names, values, WIDTHS)), ScopeError)


def decode_scope(scope: int) -> RelayScope:
    """Parse a scope integer; raise ``ScopeVersionError`` for an ``LZE1`` scope and
    ``ScopeError`` unless it is exactly in the scheme's layout (no value is reduced)."""
    if scope_magic(scope) in RETIRED_MAGICS:
        raise ScopeVersionError("relay-epoch scope version LZE1 is no longer accepted (LZE2 binds the registry)")
    tag, group_id, epoch, slot = unpack_scope(scope, MAGIC, WIDTHS, ScopeError, "a relay-epoch")
    return RelayScope(registry_tag=tag, group_id=group_id, epoch=epoch, slot=slot)


def epoch_at(unix_time: float, epoch_length: int) -> int:
    """The epoch number containing ``unix_time``."""
    if epoch_length <= 0:
        raise ValueError("epoch_length must be positive")
    return int(unix_time // epoch_length)


def check_epoch_parameters(epoch_length: int, skew: int) -> None:
    """Raise ``ValueError`` unless ``0 <= skew < epoch_length / 2``.

    With ``2 * skew >= epoch_length`` some instant would accept three epochs (the
    previous, the current and the next: three times the limit at once); below it at most
    two are accepted at any instant. Verifiers check this when they start."""
    for name, value in (("epoch_length", epoch_length), ("clock_skew", skew)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer number of seconds")
    if epoch_length <= 0 or skew < 0:
        raise ValueError("epoch_length must be positive and clock_skew not negative")
    if 2 * skew >= epoch_length:
        raise ValueError(
            f"clock_skew ({skew} s) must be less than epoch_length / 2 ({epoch_length} / 2 s):"
            " a larger skew accepts three epochs at once"
        )


def worst_case_sends(window: float, epoch_length: int, skew: int, limit: int) -> int:
    """The most sends one identity can have accepted at instants within any closed time
    window ``[a, a + window]`` by one nullifier store (docs/authorization.md).

    Epoch ``e`` is accepted exactly for ``t`` in ``[e*E - skew, (e+1)*E + skew)`` (see
    :func:`acceptable_epochs`), an interval of length ``E + 2*skew``, and each epoch has
    ``limit`` slots. A window meets ``k`` such intervals iff it is longer than
    ``(k - 2)*E - 2*skew``, so the bound is ``limit * (1 + ceil((window + 2*skew) / E))``.
    """
    check_epoch_parameters(epoch_length, skew)
    if window < 0 or limit < 0:
        raise ValueError("window and limit must not be negative")
    # ceil((window + 2 skew) / E) on exact rationals (no float rounding at the boundary)
    return limit * (1 + ceil((Fraction(window) + 2 * skew) / epoch_length))


def acceptable_epochs(unix_time: float, epoch_length: int, skew: int) -> set[int]:
    """Epochs a verifier accepts at ``unix_time``: the current one, plus a neighbour when
    ``unix_time`` lies within ``skew`` seconds of the boundary (client clocks drift).
    Raises ``ValueError`` for parameters :func:`check_epoch_parameters` refuses."""
    check_epoch_parameters(epoch_length, skew)
    current = epoch_at(unix_time, epoch_length)
    accepted = {current}
    if unix_time - current * epoch_length < skew and current > 0:
        accepted.add(current - 1)
    if (current + 1) * epoch_length - unix_time <= skew:
        accepted.add(current + 1)
    return accepted


def blob_message(blob_digest: bytes) -> int:
    """The proof message for a blob: its 32-byte SHA-256 digest as a big-endian integer."""
    if len(blob_digest) != 32:
        raise ValueError("blob digest must be 32 bytes (SHA-256)")
    return int.from_bytes(blob_digest, "big")


def digest_blob(blob: bytes) -> bytes:
    """SHA-256 of the encrypted blob, the only thing about a blob the registry ever sees."""
    return hashlib.sha256(blob).digest()
