"""free_port picks listening ports below the kernel's ephemeral range, where no client
connection's local port can take one between the pick and the bind."""

from __future__ import annotations

import socket

from model_monitoring.commands.broker import _ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = _ephemeral_low()
    ports = {free_port() for _ in range(50)}
    assert all(10_000 <= p < low for p in ports)
    assert len(ports) > 40  # random, not one port handed to every caller
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))
