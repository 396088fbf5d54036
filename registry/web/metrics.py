"""Metrics that show floods and abuse without identifying anyone (issue #10 §4).

Series added to the registry's ``/metrics`` (docs/api.md "Metrics"; the alerting rules
in docs/alerts.yml use them):

- ``zkid_http_refusals_total{route,code}``: every answer with status >= 400, by route
  *template* and machine-readable error code (our own vocabulary, never a value).
- ``zkid_rate_limited_total{class}``: 429s of the per-IP limits, by route class.
- ``zkid_registrations_accepted_total``: commitments accepted into the outbox (202).
- ``zkid_batcher_spent_wei_last_hour`` and ``zkid_batcher_spend_limit_wei_per_hour``:
  what the batcher spent (or committed) in the last hour, and its budget.

No label holds an address, commitment, proof or path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from registry.web.rate_limit import IpRateLimiter

log = logging.getLogger(__name__)

_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")
#: Error bodies are small; a larger one is not parsed (its code is counted as ``other``).
_MAX_ERROR_BODY = 8192


class TrafficMetrics:
    """The counters and the scrape-time collector, registered in ``registry``."""

    def __init__(
        self, registry: CollectorRegistry, service: Any, limiter: IpRateLimiter | None, spend_per_hour: int | None
    ) -> None:
        self.refusals = Counter(
            "zkid_http_refusals", "Answers with status >= 400 by route template and error code.",
            ["route", "code"], registry=registry,
        )
        self.registrations = Counter(
            "zkid_registrations_accepted", "Commitments accepted into the outbox (202).", registry=registry
        )
        registry.register(_TrafficCollector(service, limiter, spend_per_hour))


class _TrafficCollector(Collector):
    def __init__(self, service: Any, limiter: IpRateLimiter | None, spend_per_hour: int | None) -> None:
        self.service = service
        self.limiter = limiter
        self.spend_per_hour = spend_per_hour

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        limited = CounterMetricFamily(
            "zkid_rate_limited", "Requests refused by the per-IP limits (429), by route class.", labels=["class"]
        )
        if self.limiter is not None:
            for route_class, count in sorted(self.limiter.refused.items()):
                limited.add_metric([route_class], float(count))
        yield limited
        spent = GaugeMetricFamily(
            "zkid_batcher_spent_wei_last_hour", "Wei the batcher spent or committed in the last hour."
        )
        try:
            now = float(self.service.clock())
            spent.add_metric([], float(self.service.outbox.spent_since(now - 3600)))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail
            log.warning("spend read failed during a metrics scrape: %s", type(exc).__name__)
        yield spent
        if self.spend_per_hour is not None:
            budget = GaugeMetricFamily(
                "zkid_batcher_spend_limit_wei_per_hour", "The batcher's budget per sliding hour (spend_per_hour)."
            )
            budget.add_metric([], float(self.spend_per_hour))
            yield budget


def error_code(body: Any) -> str:
    if not isinstance(body, (bytes, bytearray)) or not body or len(body) > _MAX_ERROR_BODY:
        return "other"
    try:
        data = json.loads(body)
    except ValueError:
        return "other"
    error = data.get("error") if isinstance(data, dict) else None
    value = error.get("code") if isinstance(error, dict) else None
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "other"
