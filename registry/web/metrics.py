"""Prometheus metrics of the registry's HTTP API, none of which identifies anyone.

:class:`Metrics`: requests, latency and authorization outcomes by route *template*, and
gauges read from ``service.health()`` at scrape time. :class:`TrafficMetrics`: the series
that show floods and abuse (docs/api.md "Metrics"; the alerting rules in docs/alerts.yml
use them):

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
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from registry.service.authorization import Reason
from registry.service.batcher import FAILURE_KINDS
from registry.web.rate_limit import IpRateLimiter

if TYPE_CHECKING:
    from registry.service.facade import RegistryService

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


class Metrics:
    """Prometheus metrics of one app (its own registry: several apps can live in a process)."""

    def __init__(self, service: RegistryService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "zkid_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "zkid_http_request_duration_seconds", "Time to answer, by route template.",
            ["route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )
        self.authorizations = Counter(
            "zkid_authorizations", "POST /v1/authorize outcomes by reason (`ok` = authorized).",
            ["reason"], registry=self.registry,
        )
        for reason in Reason:
            self.authorizations.labels(reason.value)
        self.registry.register(_ServiceCollector(service))


class _ServiceCollector(Collector):
    """Gauges read from ``service.health()`` at scrape time."""

    def __init__(self, service: RegistryService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            health = self.service.health()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail
            log.warning("health() failed during a metrics scrape: %s", type(exc).__name__)
            health = {"ledger": "down"}
        up = GaugeMetricFamily("zkid_ledger_up", "1 if the ledger node answers.")
        up.add_metric([], 1.0 if health.get("ledger") == "up" else 0.0)
        yield up
        failures = CounterMetricFamily(
            "zkid_batcher_failures", "Batcher failures by kind (docs/api.md).", labels=["kind"]
        )
        counts = self.service.batcher.stats.failures
        for kind in FAILURE_KINDS:
            failures.add_metric([kind], float(counts.get(kind, 0)))
        yield failures
        degraded = GaugeMetricFamily("zkid_health_degraded", "1 per reason /v1/health gives now.", labels=["reason"])
        for reason in health.get("reasons", []) or []:
            degraded.add_metric([str(reason)], 1.0)
        yield degraded
        for key, name, doc in (
            ("outbox_pending", "zkid_outbox_pending", "Registrations accepted but not yet on chain."),
            ("outbox_unconfirmed", "zkid_outbox_unconfirmed", "Registrations mined, not yet final."),
            ("oldest_pending_seconds", "zkid_oldest_pending_seconds", "Age of the oldest registration not yet on chain."),
            ("indexed_block", "zkid_indexed_block", "Last block applied to the index."),
            ("head_block", "zkid_head_block", "Latest block of the ledger node."),
            ("lag_blocks", "zkid_index_lag_blocks", "Blocks between the head and the index."),
        ):
            value = health.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                gauge = GaugeMetricFamily(name, doc)
                gauge.add_metric([], float(value))
                yield gauge

