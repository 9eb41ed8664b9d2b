"""Fixtures: a simulator on a real pty or a real TCP socket, and a Terminal opened on it
through pyserial. Every test using ``sim`` runs once per transport available here (the
pty on POSIX, the socket everywhere: it is what a Windows till's tests run on)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivers import LinkTiming, Terminal
from drivers.simulator.lines import pty_available
from pos_plugin.world import World, load_world

TRANSPORTS = ["pty", "socket"] if pty_available() else ["socket"]

# Generous deadlines: a loaded 2-core CI box must not turn into re-sends.
TIMING = LinkTiming(first_byte=0.5, inter_byte=0.2, response=1.5, exchange=8.0)


@pytest.fixture(scope="session")
def world() -> World:
    return load_world()


@pytest.fixture(params=TRANSPORTS)
def sim(world: World, request: pytest.FixtureRequest) -> Iterator[Any]:
    from drivers.simulator import Simulator

    s = Simulator(world, transport=request.param)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def trace_lines() -> list[str]:
    return []


@pytest.fixture
def terminal(sim: Any, trace_lines: list[str]) -> Iterator[Terminal]:
    t = Terminal(sim.path, timing=TIMING, trace=trace_lines.append, hold=0.1, backoff=(0.05, 0.1))
    t.open()
    yield t
    t.close()
