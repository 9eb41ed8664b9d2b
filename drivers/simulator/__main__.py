"""``python -m drivers.simulator [--world FILE] [--baud 9600] [--pace] [--control-port N]``

Prints the serial path to open (a stable symlink to the pty) and the control
address, then serves until interrupted. Example session::

    $ python -m drivers.simulator --pace
    serial: /tmp/pos-sim-abc123/ttySIM0 (pty /dev/pts/5)
    control: 127.0.0.1:40123
    $ echo '{"verb": "present_card", "card_no": "B11000001"}' | nc 127.0.0.1 40123
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from drivers.simulator.control import ControlServer
from drivers.simulator.sim import Simulator
from pos_plugin.world import load_world


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drivers.simulator", description=__doc__)
    ap.add_argument("--world", help="world file (default: the embedded example world)")
    ap.add_argument("--baud", type=int, default=9600, help="nominal baud rate (for --pace)")
    ap.add_argument("--pace", action="store_true", help="pace bytes at --baud, 8N1")
    ap.add_argument("--control-port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    args = ap.parse_args(argv)

    sim = Simulator(load_world(args.world), pace_baud=args.baud if args.pace else None)
    path = sim.start()
    control = ControlServer(sim, args.control_port)
    host, port = control.start()
    print(f"serial: {path} (pty {sim.pty_path})", flush=True)
    print(f"control: {host}:{port}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    control.stop()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
