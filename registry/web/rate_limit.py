"""Per-client-IP limits: token buckets per route class, ``429 rate_limited`` with ``Retry-After``.

Used by the registry (registry/web/app.py; classes ``registration``, ``authorization``,
``reads``, ``evidence``) and the relay (registry/relay/app.py; ``send``, ``reads``); the
limits and their defaults are in docs/api.md ("Limits per client IP") and docs/relay.md.

- A bucket holds at most ``burst`` tokens and refills at ``per_minute`` tokens a minute. A
  request costs one token of its class; a registration costs one per commitment (the
  request's token, then the rest once its body is parsed: :meth:`IpRateLimiter.take`).
- The key of a bucket is the client address and nothing else (no path, commitment or
  header): an IPv4 address, or the /64 network of an IPv6 address (one subscriber gets at
  least a /64, so single IPv6 addresses would let one client rotate past any limit).
  The client address is :func:`registry.storage.access_log.client_ip`: the peer, or a trusted
  proxy's ``X-Forwarded-For``.
- State lives in memory only. An entry is forgotten as soon as its bucket is full again
  (it then says nothing a fresh bucket would not), and in any case after ``max_idle``
  seconds without a request (the connection log's retention, at most 72 h), so the limiter
  never remembers an address longer than the connection log may. Memory is bounded by
  ``max_keys`` entries per class (beyond it the least recently used are dropped).
- Per process: a deployment running N processes of the same service behind one address
  allows at most N times the configured limit (documented; `zkid up`/`zkid serve` and
  `zkid relay` are one process each).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from registry.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Machine-readable code of a refusal (the same on the registry and the relay).
CODE = "rate_limited"
#: A refused request's body is read and dropped up to this size before the answer, so that
#: the client reads the 429 instead of a reset; beyond it the connection is closed.
DRAIN_LIMIT = 1 << 20
#: ...and for at most this many seconds.
DRAIN_TIMEOUT = 30.0
#: Seconds between sweeps of forgotten entries (done by the requests themselves).
SWEEP_INTERVAL = 60.0


@dataclass(frozen=True)
class RouteLimit:
    """``per_minute`` tokens a minute (sustained), at most ``burst`` at once."""

    per_minute: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_minute > 0 and math.isfinite(self.per_minute)) or self.burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")


def client_key(ip: str | None) -> str:
    """The bucket key of a client address: IPv4 as is, IPv6 as its /64 network (an
    IPv4-mapped IPv6 address as its IPv4 address); no address at all: ``unknown``."""
    if not ip:
        return "unknown"
    if ":" not in ip:
        return ip  # IPv4 (the common case, no parsing)
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def retry_after(wait: float) -> str:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait`` seconds."""
    return str(max(1, math.ceil(wait)))


class IpRateLimiter:
    """Token buckets per (route class, client key); thread-safe (the registry charges
    registrations from its thread pool). ``clock`` is monotonic seconds."""

    def __init__(
        self,
        limits: Mapping[str, RouteLimit],
        *,
        exempt: Sequence[str] = (),
        max_idle: float = 72 * 3600,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_idle <= 0 or max_keys < 1:
            raise ValueError("max_idle and max_keys must be positive")
        self.limits = dict(limits)
        self.exempt_networks = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in exempt)
        self.max_idle = float(max_idle)
        self.max_keys = max_keys
        self._clock = clock
        # class -> key -> (tokens, at); least recently updated first.
        self._buckets: dict[str, OrderedDict[str, tuple[float, float]]] = {c: OrderedDict() for c in self.limits}
        self._lock = threading.Lock()
        self._last_sweep = clock()
        #: Refusals per class since start (exported as ``zkid_rate_limited_total``).
        self.refused: Counter[str] = Counter({c: 0 for c in self.limits})

    def is_exempt(self, ip: str | None) -> bool:
        """Whether ``ip`` is in an operator-named exempt network (relays, account services)."""
        if not self.exempt_networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in net for net in self.exempt_networks)

    def burst(self, route_class: str) -> int:
        return self.limits[route_class].burst

    def take(self, route_class: str, ip: str | None, n: int = 1, *, paid: int = 0) -> float:
        """Take ``n`` tokens from the client's bucket of ``route_class``, all or nothing,
        of which ``paid`` were taken already (a registration's request token). Returns 0.0
        when taken (or exempt); otherwise the seconds until they could be, ``math.inf``
        when ``n`` is more than the bucket holds (it can never pass)."""
        if n <= 0 or self.is_exempt(ip):
            return 0.0
        limit = self.limits[route_class]
        if n > limit.burst:
            with self._lock:
                self.refused[route_class] += 1
            return math.inf
        n -= min(max(paid, 0), n)
        if n == 0:
            return 0.0
        key = client_key(ip)
        rate = limit.per_minute / 60.0
        with self._lock:
            now = self._clock()
            if now - self._last_sweep >= SWEEP_INTERVAL:
                self._sweep_locked(now)
            buckets = self._buckets[route_class]
            tokens, at = buckets.pop(key, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + max(0.0, now - at) * rate)
            if tokens < n:
                buckets[key] = (tokens, now)
                self.refused[route_class] += 1
                return (n - tokens) / rate
            buckets[key] = (tokens - n, now)  # re-inserted last: most recently used
            while len(buckets) > self.max_keys:
                buckets.popitem(last=False)
            return 0.0

    def sweep(self) -> int:
        """Forget the entries whose bucket is full again or that idled ``max_idle``;
        returns how many went."""
        with self._lock:
            return self._sweep_locked(self._clock())

    def _sweep_locked(self, now: float) -> int:
        self._last_sweep = now
        removed = 0
        for route_class, buckets in self._buckets.items():
            limit = self.limits[route_class]
            rate = limit.per_minute / 60.0
            gone = [
                key
                for key, (tokens, at) in buckets.items()
                if now - at >= self.max_idle or tokens + (now - at) * rate >= limit.burst
            ]
            for key in gone:
                del buckets[key]
            removed += len(gone)
        return removed

    def entries(self) -> dict[str, int]:
        """Entries held per class (tests; nothing but counts leaves this object)."""
        with self._lock:
            return {c: len(b) for c, b in self._buckets.items()}

    def keys(self) -> set[str]:
        """Every key held (tests: they must be addresses only)."""
        with self._lock:
            return {k for b in self._buckets.values() for k in b}


async def refuse(send: Send, receive: Receive, wait: float, *, more_body: bool = True) -> None:
    """Answer 429 ``rate_limited`` with ``Retry-After``; the request's body is read and
    dropped first (up to :data:`DRAIN_LIMIT`, else the connection is closed)."""
    drained = 0
    complete = not more_body

    async def drain() -> None:
        nonlocal drained, complete
        while not complete and drained <= DRAIN_LIMIT:
            message = await receive()
            if message.get("type") != "http.request":
                break
            drained += len(message.get("body", b""))
            complete = not message.get("more_body", False)

    try:  # a client trickling its body does not hold the refusal (and the connection) open
        await asyncio.wait_for(drain(), DRAIN_TIMEOUT)
    except TimeoutError:
        pass
    seconds = retry_after(wait)
    body = error_body(CODE, f"too many requests from this address; retry after {seconds} s")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", seconds.encode()),
    ]
    if not complete:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimitMiddleware:
    """ASGI middleware charging one token of the request's class (``classify(scope)``)
    before anything reads the body; ``exempt(scope)`` (e.g. a valid operator token)
    skips the limit. The client address is :func:`registry.storage.access_log.client_ip`."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: IpRateLimiter,
        classify: Callable[[Scope], str],
        exempt: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.classify = classify
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and not (self.exempt is not None and self.exempt(scope)):
            from registry.storage.access_log import client_ip

            wait = self.limiter.take(self.classify(scope), client_ip(scope))
            if wait > 0:
                await refuse(send, receive, wait)
                return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------- the registry's classes

#: The registry's route classes (docs/api.md "Limits per client IP").
REGISTRY_CLASSES = ("registration", "authorization", "reads", "evidence")


def registry_route_class(scope: Scope) -> str:
    """The class of a registry request, from its method and path (before routing, so a
    refused request costs no routing): registrations, authorizations, the evidence log,
    and ``reads`` for everything else (lookups, health, metrics, operator routes)."""
    path = str(scope.get("path", ""))
    if path.startswith("/v1/evidence"):
        return "evidence"
    if scope.get("method") == "POST":
        if path in ("/v1/authorize", "/v1/nullifiers/claim"):  # a relay's claims: its sends
            return "authorization"
        if path.startswith("/v1/groups/") and path.endswith("/members") and path.count("/") == 4:
            return "registration"
    return "reads"


def registry_limiter(settings: Any) -> IpRateLimiter:
    """The registry's limiter from its settings (``ip_rate_*``, ``ip_burst_*``,
    ``ip_limit_exempt``; entries live at most ``access_log_hours``)."""
    limits = {
        c: RouteLimit(float(getattr(settings, f"ip_rate_{c}")), int(getattr(settings, f"ip_burst_{c}")))
        for c in REGISTRY_CLASSES
    }
    return IpRateLimiter(limits, exempt=settings.ip_limit_exempt, max_idle=settings.access_log_hours * 3600)


def bearer_exempt(token: str | None) -> Callable[[Scope], bool]:
    """Requests with the valid operator token are not limited (the operator, or an account
    service writing an admission group, may send much from one address)."""
    import hmac

    expected = None if token is None else f"bearer {token}".encode()

    def exempt(scope: Scope) -> bool:
        if expected is None:
            return False
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = bytes(value)
                # The scheme is case-insensitive; the token is compared in constant time.
                return len(given) == len(expected) and hmac.compare_digest(
                    given[:7].lower() + given[7:], expected
                )
        return False

    return exempt
