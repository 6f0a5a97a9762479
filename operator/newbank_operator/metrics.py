"""Transaction-service metrics from the instances' Prometheus ``/metrics``: rps, in-flight, p95.

A counter says nothing until it is read twice, so ``MetricsWindow`` keeps each instance's previous
sample and turns two samples into rates (a counter that went down is a restarted instance: its new
value is the increase, as Prometheus' ``rate()`` does). The p95 comes from the histogram's bucket
increases over all instances, interpolated like ``histogram_quantile``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "newbank_http_requests"  # the parser strips _total from counter families
IN_FLIGHT = "newbank_http_requests_in_flight"
DURATION = "newbank_http_request_duration_seconds"
OUTBOX_PENDING = "newbank_outbox_pending"
# Probes and scrapes are not load: they would keep an idle service looking busy.
IGNORED_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})


@dataclass(frozen=True)
class InstanceSample:
    """One scrape of one instance: counters as read, gauges as read."""

    at: float
    requests_total: float
    in_flight: float
    duration_buckets: dict[float, float] = field(default_factory=dict)
    outbox_pending: float = 0.0


@dataclass(frozen=True)
class ObservedMetrics:
    """The transaction service as a whole; None where a rate needs a second sample."""

    instances: int
    rps_total: float | None
    rps_per_replica: float | None
    in_flight_per_replica: float | None
    p95_ms: float | None
    outbox_pending: float


def parse_sample(text: str, at: float) -> InstanceSample:
    """Reduce one /metrics page to the numbers the operator scales on."""
    requests = in_flight = outbox = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name == REQUESTS + "_total" and route not in IGNORED_ROUTES:
                requests += sample.value
            elif sample.name == IN_FLIGHT:
                in_flight += sample.value
            elif sample.name == DURATION + "_bucket" and route not in IGNORED_ROUTES:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == OUTBOX_PENDING:
                outbox += sample.value
    return InstanceSample(
        at=at, requests_total=requests, in_flight=in_flight, duration_buckets=buckets, outbox_pending=outbox
    )


def _increase(now: float, before: float) -> float:
    return now if now < before else now - before


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative ``{le: count}``; None without observations."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is the best answer
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return ordered[-1][0]


class MetricsWindow:
    """Previous samples per instance URL, turning scrapes into rates."""

    def __init__(self) -> None:
        self._previous: dict[str, InstanceSample] = {}

    def observe(self, samples: Mapping[str, InstanceSample | None]) -> ObservedMetrics:
        """Feed this round's scrapes (None: the instance did not answer) and get the aggregate."""
        reporting = {url: s for url, s in samples.items() if s is not None}
        rates: list[float] = []
        bucket_increase: dict[float, float] = {}
        for url, sample in reporting.items():
            before = self._previous.get(url)
            if before is None or sample.at <= before.at:
                continue
            rates.append(_increase(sample.requests_total, before.requests_total) / (sample.at - before.at))
            for bound, count in sample.duration_buckets.items():
                delta = _increase(count, before.duration_buckets.get(bound, 0.0))
                bucket_increase[bound] = bucket_increase.get(bound, 0.0) + delta
        # Forget instances that are gone, so a reused address starts afresh.
        self._previous = dict(reporting)
        count = len(reporting)
        rps_total = sum(rates) if rates else None
        p95 = histogram_quantile(0.95, bucket_increase)
        return ObservedMetrics(
            instances=count,
            rps_total=rps_total,
            rps_per_replica=(sum(rates) / len(rates)) if rates else None,
            in_flight_per_replica=(sum(s.in_flight for s in reporting.values()) / count) if count else None,
            p95_ms=p95 * 1000 if p95 is not None else None,
            outbox_pending=sum(s.outbox_pending for s in reporting.values()),
        )


async def scrape(
    client: httpx.AsyncClient, urls: Iterable[str], now: float, path: str = "/metrics"
) -> dict[str, InstanceSample | None]:
    """Scrape every instance concurrently; an instance that fails is None, not an error."""

    async def one(url: str) -> InstanceSample | None:
        try:
            response = await client.get(url.rstrip("/") + path)
            response.raise_for_status()
            sample = parse_sample(response.text, now)
            # The services' middleware counts the scrape itself as in flight while rendering the page.
            return replace(sample, in_flight=max(0.0, sample.in_flight - 1))
        except (httpx.HTTPError, ValueError):
            return None

    url_list = list(urls)
    results = await asyncio.gather(*(one(url) for url in url_list))
    return dict(zip(url_list, results, strict=True))
