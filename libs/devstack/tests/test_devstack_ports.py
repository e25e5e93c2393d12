"""Ports for a stack's servers: distinct, free, and outside the kernel's ephemeral range (where
outgoing connections could take one between choosing it and binding it)."""

from __future__ import annotations

import socket

from funnel_devstack.ports import free_port
from funnel_devstack.stack import StackPorts


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
    except OSError:
        low, high = 32768, 60999
    return low, high


def test_ports_are_distinct_free_and_not_ephemeral() -> None:
    ports = [free_port() for _ in range(100)]
    assert len(set(ports)) == 100
    low, _ = _ephemeral_range()
    assert all(p < low for p in ports), ports
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # still free


def test_a_stack_never_gets_one_port_twice() -> None:
    for _ in range(50):
        p = StackPorts.free()
        every = [p.postgres, p.kafka, p.kafka_controller, p.smtp, *p.services.values()]
        assert len(set(every)) == len(every)
