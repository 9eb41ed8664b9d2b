"""Device simulator: reader + PIN pad + QR scanner on a pty (POSIX) or a TCP socket (any OS).

``python -m drivers.simulator --world FILE`` for out-of-process use (see
``drivers.simulator.control`` for the JSON-lines control channel), or embed::

    sim = Simulator(load_world())
    path = sim.start()            # a stable symlink to the current pty, or socket://...
    # Simulator(world, transport="socket"): socket://127.0.0.1:PORT on any OS
    sim.present_card("B11000001", pin=["wrong", "correct"])
"""

from drivers.simulator.sim import FAULTS, SimStats, Simulator

__all__ = ["FAULTS", "SimStats", "Simulator"]
