"""The chaos figures' arithmetic, without a platform: what counts as a failed write, when writes are
back, the error-rate buckets, which answers are retried with the same key, and the targets."""

from __future__ import annotations

import httpx

from newbank.chaos.checks import Verdict
from newbank.chaos.load import Attempt, Order, PaymentLoad, _classify
from newbank.chaos.report import Result, error_rate
from newbank.chaos.timeline import Run
from newbank.chaos.world import Target, World


def _load(*orders: Order) -> PaymentLoad:
    load = PaymentLoad(Target.__new__(Target), World([], []), "t")
    load.orders = list(orders)
    return load


def _order(key: str, *attempts: tuple[float, float, str]) -> Order:
    order = Order(key, "m", "a", 100, [Attempt(*a) for a in attempts])
    if order.attempts and order.attempts[-1].ok:
        order.status, order.payment_id, order.acked_at = 201, key, order.attempts[-1].done
    return order


def test_window_runs_from_the_first_failure_to_the_first_success_sent_after_it() -> None:
    load = _load(
        _order("a", (99.0, 99.5, "201")),
        _order("b", (100.2, 100.3, "503"), (100.8, 104.9, "201")),  # sent after the failure: counts
        _order("c", (99.9, 101.0, "201")),  # in flight before the failure: does not shorten it
        _order("d", (101.0, 101.1, "ConnectError"), (101.5, 103.0, "201")),
    )
    first_fail, back, window = load.unavailability(since=100.0)  # type: ignore[misc]
    assert (first_fail, back) == (100.2, 103.0)
    assert round(window, 3) == 2.8


def test_a_failure_in_flight_at_the_fault_counts_from_the_fault() -> None:
    load = _load(_order("a", (95.0, 105.0, "ReadTimeout"), (105.1, 106.0, "201")))
    assert load.unavailability(since=100.0) == (100.0, 106.0, 6.0)


def test_no_failure_no_window() -> None:
    assert _load(_order("a", (1.0, 2.0, "201"))).unavailability(since=0.0) is None


def test_same_key_retry_only_without_a_definitive_answer() -> None:
    def answer(status: int, kind: str = "") -> tuple[bool, str]:
        body = {"type": kind} if kind else {}
        return _classify(httpx.Response(status, json=body))

    assert answer(409, "idempotency-key-in-progress")[0] is True
    assert answer(409, "idempotency-key-reused")[0] is False  # a bug in the client, not a retry
    assert answer(503)[0] is True and answer(500)[0] is True and answer(429)[0] is True
    assert answer(402)[0] is False and answer(422)[0] is False


def test_error_rate_buckets_by_completion_time() -> None:
    load = _load(_order("a", (0.0, 0.5, "201")), _order("b", (0.0, 2.5, "503"), (2.6, 4.1, "201")))
    # buckets start at the first completion (0.5): [0.5, 2.5) holds a; [2.5, 4.5) the failure and the retry
    assert error_rate(load, origin=0.5, step_s=2.0) == [(0.0, 1, 0), (2.0, 2, 1)]


def test_a_missed_target_or_a_finding_fails_the_result() -> None:
    run = Run(Target.__new__(Target))
    result = Result("x", "x", run, _load(), Verdict())
    result.targets = {"lost": (0, 0), "write unavailability s": (5.0, 4.4)}
    assert result.ok
    result.targets["write unavailability s"] = (5.0, 6.9)
    assert result.missed_targets() == ["write unavailability s 6.9 > 5.0"] and not result.ok
    result.targets["write unavailability s"] = (5.0, None)  # never measured is a miss, not a pass
    assert not result.ok
    del result.targets["write unavailability s"]
    run.findings.append("instance not restarted")
    assert not result.ok


def test_slack_widens_durations_only_never_the_counts() -> None:
    result = Result("x", "x", Run(Target.__new__(Target)), _load(), Verdict())
    result.targets = {"lost": (0, 1), "write unavailability s": (5.0, 6.9)}
    assert result.missed_targets(2.0) == ["lost 1 > 0"]
    result.targets["lost"] = (0, 0)
    assert result.missed_targets(2.0) == []
    result.targets["write unavailability s"] = (5.0, 10.5)
    assert result.missed_targets(2.0) == ["write unavailability s 10.5 > 10.0"]
