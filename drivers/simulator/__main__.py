"""``python -m drivers.simulator [--world FILE] [--baud 9600] [--pace] [--control-port N]
[--transport auto|pty|socket] [--serial-port N]``

Prints the serial path to open (a stable symlink to the pty, or on Windows and with
``--transport socket`` a ``socket://127.0.0.1:PORT`` URL that pyserial opens like a COM
port) and the control address, then serves until Ctrl+C or SIGTERM. Example::

    $ python -m drivers.simulator --pace
    serial: /tmp/pos-sim-abc123/ttySIM0 (pty /dev/pts/5)
    control: 127.0.0.1:40123
    $ python -m drivers.simulator --transport socket
    serial: socket://127.0.0.1:40125
    control: 127.0.0.1:40126
    $ echo '{"verb": "present_card", "card_no": "B11000001"}' | nc 127.0.0.1 40123
"""

from __future__ import annotations

import argparse
import sys
import threading

from drivers.simulator.control import ControlServer
from drivers.simulator.lines import TRANSPORTS
from drivers.simulator.sim import Simulator
from pos_plugin.shutdown import stop_on_signals, wait_until_stopped
from pos_plugin.world import WorldError, load_world


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drivers.simulator", description=__doc__)
    ap.add_argument("--world", help="world file (default: the embedded example world)")
    ap.add_argument("--baud", type=int, default=9600, help="nominal baud rate (for --pace)")
    ap.add_argument("--pace", action="store_true", help="pace bytes at --baud, 8N1")
    ap.add_argument("--control-port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    ap.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="auto",
        help="the serial line: a pty (POSIX), a TCP socket (any OS); auto: pty where there is one",
    )
    ap.add_argument(
        "--serial-port", type=int, default=0, help="--transport socket: TCP port (0: any)"
    )
    args = ap.parse_args(argv)

    try:
        world = load_world(args.world)
        sim = Simulator(
            world,
            pace_baud=args.baud if args.pace else None,
            transport=args.transport,
            port=args.serial_port,
        )
        path = sim.start()
    except (WorldError, ValueError, OSError) as e:
        print(f"the simulator cannot start: {e}", file=sys.stderr)
        return 2
    try:
        control = ControlServer(sim, args.control_port)
    except OSError as e:
        sim.stop()
        print(f"control port {args.control_port} cannot be used ({e}): pick another", file=sys.stderr)
        return 2
    host, port = control.start()
    pty = f" (pty {sim.pty_path})" if sim.pty_path else ""
    print(f"serial: {path}{pty}", flush=True)
    print(f"control: {host}:{port}", flush=True)

    with stop_on_signals(threading.Event()) as done:
        wait_until_stopped(done)
    control.stop()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
