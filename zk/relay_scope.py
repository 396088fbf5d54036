"""The relay-epoch scope scheme: how a send authorization encodes *when* and *which slot*.

A send authorization is a Semaphore v4 proof (``zk.proof``) whose

- ``message`` is the blob's SHA-256 digest read as a big-endian 256-bit integer, so the
  proof cannot be moved to another blob; and whose
- ``scope`` is a 256-bit integer laid out big-endian as::

      bytes  0..3   b"LZE1"      magic and version of this scheme
      bytes  4..11  group id     uint64
      bytes 12..19  epoch        uint64, floor(unix_time / epoch_length)
      bytes 20..23  slot         uint32, 0 <= slot < the group's per-epoch limit
      bytes 24..31  zero

The Semaphore nullifier is ``Poseidon2(hash(scope), secret)`` (semaphore.circom), so one
identity produces exactly one nullifier per (group, epoch, slot): a registry or relay
that refuses a seen nullifier lets each member send at most ``limit`` blobs per epoch,
while two different members never collide and nothing links a nullifier to a member.
The full scheme (epoch length, limits, clock skew) is written down in
``docs/authorization.md`` for other implementations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from math import ceil

from zk.scope_layout import pack_scope, unpack_scope

MAGIC = b"LZE1"


class ScopeError(ValueError):
    """A scope does not follow the relay-epoch scheme."""


@dataclass(frozen=True)
class RelayScope:
    group_id: int
    epoch: int
    slot: int

    def encode(self) -> int:
        """The scope integer a client proves over (layout in the module docstring)."""
        fields = (("group_id", self.group_id, 8), ("epoch", self.epoch, 8), ("slot", self.slot, 4))
        return pack_scope(MAGIC, fields, ScopeError)


def decode_scope(scope: int) -> RelayScope:
    """Parse a scope integer; raise ``ScopeError`` unless it is exactly in the scheme's layout."""
    group_id, epoch, slot = unpack_scope(scope, MAGIC, (8, 8, 4), ScopeError, "a relay-epoch")
    return RelayScope(group_id=group_id, epoch=epoch, slot=slot)


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
