"""Servers that tests start take ports below the kernel's ephemeral range.

A client connection takes its local port from that range. A chaos scenario holds the broker down for 30 s
and starts it again on the same ports while the services keep connecting: a port in the range could be taken
meanwhile by a connection's local end, and the broker would not start (the ports of the chaos platform were in
it until the ninth session). Every test platform and server goes through one of these two choosers.
"""

from __future__ import annotations

from pathlib import Path

from local_platform import INGRESS_OFFSET, free_port_block

from newbank.runtime import procs
from newbank.runtime.layout import PORT_OFFSETS


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_platform_port_blocks_lie_below_the_ephemeral_range() -> None:
    low = _ephemeral_low()
    assert max(PORT_OFFSETS.values()) < INGRESS_OFFSET  # the ingress is the block's last port
    for _ in range(30):
        base = free_port_block()
        assert 1024 <= base and base + INGRESS_OFFSET < low


def test_single_test_ports_lie_below_the_ephemeral_range() -> None:
    low = _ephemeral_low()
    assert procs.TEST_PORT_RANGE[1] < low
    ports = procs.free_ports(40)
    assert len(set(ports)) == 40 and all(1024 <= port < low for port in ports)
