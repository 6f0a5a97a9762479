"""FastAPI's native OpenTelemetry stays off unless asked for: its per-request provider look-ups cost
2.8 % of a transaction instance's py-spy samples, and the platform's metrics are Prometheus's."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from newbank.service_app import ServiceSpec, create_service_app
from newbank.settings import Settings


def _app(**settings: object) -> FastAPI:
    spec = ServiceSpec(name="partners", database="cashback", title="probe", routers=())
    return create_service_app(spec, Settings(**settings))  # type: ignore[arg-type]


def _config(app: FastAPI) -> dict[str, object]:
    config = getattr(app, "_telemetry", None)
    if config is None:
        pytest.skip("this FastAPI (before 0.165) has no native telemetry to switch off")
    return dict(config)


def test_native_telemetry_is_off_by_default() -> None:
    app = _app()
    assert {k: _config(app)[k] for k in ("tracing", "metrics", "logs")} == dict.fromkeys(
        ("tracing", "metrics", "logs"), False
    )
    assert not app._native_telemetry.enabled()  # type: ignore[attr-defined]


def test_setting_turns_it_on() -> None:
    app = _app(opentelemetry=True)
    assert {k: _config(app)[k] for k in ("tracing", "metrics", "logs")} == dict.fromkeys(
        ("tracing", "metrics", "logs"), True
    )
