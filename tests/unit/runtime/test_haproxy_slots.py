"""haproxy.cfg declares every slot an instance may take; the running ones enabled, the rest parked."""

from __future__ import annotations

from pathlib import Path

from newbank.runtime.haproxy import render_config
from newbank.runtime.layout import MAX_INSTANCES, Layout


def _server_lines(config: str, backend: str) -> list[str]:
    section = config.split(f"backend {backend}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("server ")]


def test_running_instances_enabled_and_other_slots_parked(tmp_path: Path) -> None:
    slots = {"transactions": [("transactions-1", 9010), ("transactions-2", 9011), ("transactions-3", 9012)]}
    config = render_config(8080, tmp_path / "admin.sock", {"transactions": [("transactions-2", 9011)]}, slots=slots)
    assert _server_lines(config, "transactions") == [
        "server transactions-2 127.0.0.1:9011",
        "server transactions-1 127.0.0.1:9010 disabled",
        "server transactions-3 127.0.0.1:9012 disabled",
    ]
    assert _server_lines(config, "partners") == []


def test_layout_slots_are_the_instances_names_and_ports(tmp_path: Path) -> None:
    layout = Layout(
        home=tmp_path,
        ingress_port=8080,
        ports={"accounts": 9001, "partners": 9002, "cashback": 9003, "transactions": 9010},
    )
    slots = layout.instance_slots()
    assert {service: len(names) for service, names in slots.items()} == MAX_INSTANCES
    assert slots["transactions"][:2] == [("transactions-1", 9010), ("transactions-2", 9011)]
    assert slots["cashback"] == [("cashback-1", 9003)]
