"""Fixtures: a simulator on a real pty and a Terminal opened on it through pyserial."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from drivers import LinkTiming, Terminal
from pos_plugin.world import World, load_world

if os.name != "posix":  # the simulator needs os.openpty
    collect_ignore_glob = ["test_terminal*.py", "test_faults.py", "test_simulator_cli.py"]

# Generous deadlines: a loaded 2-core CI box must not turn into re-sends.
TIMING = LinkTiming(first_byte=0.5, inter_byte=0.2, response=1.5, exchange=8.0)


@pytest.fixture(scope="session")
def world() -> World:
    return load_world()


@pytest.fixture
def sim(world: World) -> Iterator[Any]:
    from drivers.simulator import Simulator

    s = Simulator(world)
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
