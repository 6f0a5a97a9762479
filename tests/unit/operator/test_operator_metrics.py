"""Parsing the services' Prometheus text and turning two scrapes into rates and a p95."""

from __future__ import annotations

import pytest

from newbank_operator.metrics import MetricsWindow, histogram_quantile, parse_sample

PAYMENTS = 'service="transactions",route="/api/v1/payments"'


def page(requests: float, in_flight: float, buckets: dict[str, float], probes: float = 0) -> str:
    lines = [
        "# HELP newbank_http_requests_total Requests",
        "# TYPE newbank_http_requests_total counter",
        f'newbank_http_requests_total{{{PAYMENTS},method="POST",status="201"}} {requests}',
        f'newbank_http_requests_total{{service="transactions",route="/healthz",method="GET",status="200"}} {probes}',
        "# TYPE newbank_http_requests_in_flight gauge",
        f'newbank_http_requests_in_flight{{service="transactions"}} {in_flight}',
        "# TYPE newbank_http_request_duration_seconds histogram",
    ]
    for le, count in buckets.items():
        lines.append(f'newbank_http_request_duration_seconds_bucket{{{PAYMENTS},le="{le}"}} {count}')
    lines += ["# TYPE newbank_outbox_pending gauge", "newbank_outbox_pending 7"]
    return "\n".join(lines) + "\n"


def test_parse_ignores_probe_routes() -> None:
    sample = parse_sample(page(100, 3, {"0.1": 50, "+Inf": 100}, probes=999), at=1.0)
    assert sample.requests_total == 100
    assert sample.in_flight == 3
    assert sample.duration_buckets == {0.1: 50, float("inf"): 100}
    assert sample.outbox_pending == 7


def test_rate_needs_two_samples_and_aggregates_instances() -> None:
    window = MetricsWindow()
    first = window.observe(
        {
            "a": parse_sample(page(100, 2, {"0.05": 0, "0.1": 0, "+Inf": 0}), at=0.0),
            "b": parse_sample(page(0, 4, {"0.05": 0, "0.1": 0, "+Inf": 0}), at=0.0),
        }
    )
    assert first.rps_total is None and first.p95_ms is None
    assert first.in_flight_per_replica == 3
    second = window.observe(
        {
            "a": parse_sample(page(300, 2, {"0.05": 100, "0.1": 200, "+Inf": 200}), at=10.0),
            "b": parse_sample(page(400, 4, {"0.05": 100, "0.1": 200, "+Inf": 200}), at=10.0),
        }
    )
    assert second.rps_total == pytest.approx(60.0)
    assert second.rps_per_replica == pytest.approx(30.0)
    # 400 observations, rank 380 falls in (0.05, 0.1]: 0.05 + 0.05 * (380-200)/200
    assert second.p95_ms == pytest.approx(95.0)
    assert second.instances == 2


def test_counter_reset_counts_new_value_and_dead_instance_is_skipped() -> None:
    window = MetricsWindow()
    window.observe({"a": parse_sample(page(1000, 0, {}), at=0.0)})
    observed = window.observe({"a": parse_sample(page(50, 0, {}), at=5.0), "b": None})
    assert observed.rps_total == pytest.approx(10.0)
    assert observed.instances == 1


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({}, None),
        ({0.1: 0.0, float("inf"): 0.0}, None),
        ({0.1: 10.0, 0.5: 20.0, float("inf"): 20.0}, 0.1 + 0.4 * 9 / 10),
        ({0.1: 0.0, float("inf"): 10.0}, 0.1),  # all beyond the last finite bucket
    ],
)
def test_histogram_quantile(buckets: dict[float, float], expected: float | None) -> None:
    result = histogram_quantile(0.95, buckets)
    assert result == (pytest.approx(expected) if expected is not None else None)
