"""Who may append to the evidence log, and how much (docs/evidence.md, "Who may append").

A record is admitted only if, checked in this order (cheap checks first, so a record from
an unknown key costs no signature recovery):

1. its claimed ``issuer`` is a trusted relay key: the operator's ``relay_keys`` setting or
   a key added through ``PUT /v1/evidence/relays/{address}`` (kept in the log's
   database). Otherwise 403 ``unknown_signer``. An empty list refuses every record.
2. its ``chainId`` is this registry's chain (the deployment's): else 422 ``wrong_chain``.
3. ``now - max_age <= eventTime <= now + max_skew``: else 422 ``event_time_in_future`` or
   ``event_time_too_old``.
4. its EIP-712 signature recovers to the issuer (422 ``bad_signature``): checked here,
   before the rate limit is charged, so nobody can spend a trusted relay's budget with
   forged records.
5. the issuer's token bucket (``rate`` records per second, ``burst`` at most) holds a
   token per *new* record: else 429 ``rate_limited`` with ``Retry-After``. Records
   already in the log and repeats within the batch cost nothing (anyone can read a
   relay's records and post them again: that must not spend the relay's budget). A batch
   is charged all or nothing; one with more new records than the burst can never pass
   (413 ``too_large``).

Buckets exist only for trusted keys, so their number is bounded by the operator's list.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Protocol

from eth_utils.address import to_checksum_address

from registry.errors import RegistryError
from registry.evidence.log import EvidenceLogError, check_records
from zk.evidence.record import SignedRecord

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def relay_address(value: str) -> str:
    """``value`` as an EIP-55 address. All lower- or upper-case hex is accepted; mixed case
    must be a valid checksum (a typo in a checksummed address is refused, not fixed)."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value.strip()):
        raise ValueError(f"not an Ethereum address: {value!r}")
    value = value.strip()
    checksummed = to_checksum_address(value)
    body = value[2:]
    if body != body.lower() and body != body.upper() and checksummed != value:
        raise ValueError(f"bad EIP-55 checksum: {value}")
    if int(body, 16) == 0:
        raise ValueError("the zero address is not a relay key")
    return checksummed


class AdmissionRefused(RegistryError):
    """A refused record: machine-readable ``code`` (its status from the one table,
    registry/errors.py), ``detail``, and for ``rate_limited`` ``retry_after``."""

    def __init__(self, code: str, detail: str, retry_after: int | None = None) -> None:
        super().__init__(code, detail, headers=None if retry_after is None else {"Retry-After": str(retry_after)})
        self.detail = detail
        self.retry_after = retry_after


class ConfiguredKey(ValueError):
    """A key from the settings cannot be removed at run time."""


class RelayKeyStore(Protocol):
    """Where operator-added relay keys persist (:class:`registry.evidence.log.EvidenceLog`)."""

    def relay_keys(self) -> list[str]: ...

    def add_relay_key(self, address: str) -> bool: ...

    def remove_relay_key(self, address: str) -> bool: ...


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second, at most ``burst`` tokens."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, needs: dict[str, int]) -> float:
        """Take ``needs[key]`` tokens from each key's bucket, all or nothing. Returns 0 when
        taken, else the seconds until every bucket holds enough (nothing is taken)."""
        with self._lock:
            now = self._clock()
            levels = {}
            wait = 0.0
            for key, n in needs.items():
                tokens, at = self._buckets.get(key, (float(self.burst), now))
                tokens = min(float(self.burst), tokens + (now - at) * self.rate)
                levels[key] = tokens
                if tokens < n:
                    wait = max(wait, (n - tokens) / self.rate)
            if wait > 0:
                return wait
            for key, n in needs.items():
                self._buckets[key] = (levels[key] - n, now)
            return 0.0

    def forget(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)


class EvidenceAdmission:
    """The checks of the module docstring. ``clock`` gives wall time (UTC seconds)."""

    def __init__(
        self,
        chain_id: int,
        configured: Iterable[str] = (),
        store: RelayKeyStore | None = None,
        *,
        max_skew: int = 300,
        max_age: int = 7 * 24 * 3600,
        rate: float = 20.0,
        burst: int = 2000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_skew < 0 or max_age < 0:
            raise ValueError("max_skew and max_age must be >= 0")
        self.chain_id = chain_id
        self.configured = frozenset(relay_address(a) for a in configured)
        self._store = store
        self.max_skew = max_skew
        self.max_age = max_age
        self.buckets = TokenBuckets(rate, burst, monotonic)
        self._clock = clock
        self._lock = threading.Lock()
        self._added = frozenset(relay_address(a) for a in store.relay_keys()) if store is not None else frozenset()

    # --- the trusted list --------------------------------------------------------------

    def trusted(self) -> frozenset[str]:
        return self.configured | self._added

    def relays(self) -> list[dict[str, str]]:
        """Every trusted key and where it comes from (``config`` or ``operator``)."""
        return [{"address": a, "source": "config" if a in self.configured else "operator"}
                for a in sorted(self.trusted())]

    def add(self, address: str) -> bool:
        """Trust ``address`` (persisted); False if it was trusted already."""
        key = relay_address(address)
        if self._store is None:
            raise ValueError("no store for relay keys")
        with self._lock:
            if key in self.trusted():
                self._store.add_relay_key(key)  # a configured key may also be stored: harmless
                return False
            self._store.add_relay_key(key)
            self._added = self._added | {key}
            return True

    def remove(self, address: str) -> bool:
        """Stop trusting an operator-added key; False if it was not one. Configured keys
        are removed from the configuration, not here (:class:`ConfiguredKey`)."""
        key = relay_address(address)
        if key in self.configured:
            raise ConfiguredKey(f"{key} is in the configuration (relay_keys); remove it there")
        if self._store is None:
            return False
        with self._lock:
            removed = self._store.remove_relay_key(key)
            self._added = self._added - {key}
        self.buckets.forget(key)
        return removed

    # --- admission ---------------------------------------------------------------------

    def admit(
        self,
        records: Sequence[SignedRecord],
        known: Callable[[Collection[bytes]], set[bytes]] | None = None,
        *,
        check: Callable[[Sequence[SignedRecord]], list[bytes]] = check_records,
    ) -> list[bytes]:
        """Raise :class:`AdmissionRefused` unless every record passes (module docstring);
        the records' verified hashes (for :meth:`EvidenceLog.append_detailed`).

        ``known`` tells which record hashes the log holds already (not charged); ``check``
        verifies the signatures (:func:`registry.evidence.log.check_records`, or the same
        spread over processes: :class:`registry.evidence.verify_workers.VerifyWorkers`)."""
        trusted = self.trusted()
        now = self._clock()
        many = len(records) > 1

        def where(i: int) -> str:
            return f"record {i}: " if many else ""

        for i, signed in enumerate(records):
            record = signed.record
            if record.issuer not in trusted:
                raise AdmissionRefused("unknown_signer", f"{where(i)}{record.issuer} is not a registered relay key")
            if record.chain_id != self.chain_id:
                raise AdmissionRefused("wrong_chain", f"{where(i)}chainId {record.chain_id}, this log's chain is {self.chain_id}")
            if record.event_time > now + self.max_skew:
                raise AdmissionRefused("event_time_in_future", f"{where(i)}eventTime is more than {self.max_skew} s ahead")
            if record.event_time < now - self.max_age:
                raise AdmissionRefused("event_time_too_old", f"{where(i)}eventTime is older than {self.max_age} s")
        try:
            hashes = check(records)  # the first bad record's error names its position
        except EvidenceLogError as exc:
            raise AdmissionRefused(exc.code, exc.detail) from None
        # Record hash -> issuer, each record once.
        fresh = {h: signed.record.issuer for h, signed in zip(hashes, records)}
        already = known(set(fresh)) if known is not None and fresh else set()
        needs = dict(Counter(issuer for h, issuer in fresh.items() if h not in already))
        if not needs:
            return hashes
        if max(needs.values()) > self.buckets.burst:
            raise AdmissionRefused("too_large", f"more new records from one relay than its burst ({self.buckets.burst})")
        wait = self.buckets.take(needs)
        if wait > 0:
            raise AdmissionRefused("rate_limited", "this relay's evidence rate limit is exhausted", max(1, math.ceil(wait)))
        return hashes
