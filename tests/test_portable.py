"""Windows is first-class: no POSIX-only name in the code a real till loads.

The scan reads every module of ``pos_plugin`` and ``drivers`` except the simulator's
pty line (drivers/simulator/pty_line.py, POSIX only by design, imported only when a
pty is asked for) and fails on: an import of a POSIX-only module, a use of a
POSIX-only ``os`` / ``signal`` / ``select`` name, or a string that is a /dev path.
Then every scanned module is imported for real (the Windows service module only on
Windows), so a module that would not even import on a till is caught too.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSIX_ONLY_FILES = {Path("drivers/simulator/pty_line.py")}
WINDOWS_ONLY_FILES = {Path("pos_plugin/service/windows.py")}

POSIX_MODULES = {
    "fcntl", "termios", "tty", "pty", "resource", "grp", "pwd", "posix", "crypt",
    "syslog", "curses", "readline",
}  # fmt: skip
POSIX_NAMES = {
    "os": {
        "fork", "forkpty", "openpty", "symlink", "setsid", "killpg", "getpgid", "setpgid",
        "getuid", "geteuid", "getgid", "getegid", "chown", "lchown", "mkfifo", "ttyname",
        "WNOHANG", "wait3", "wait4", "nice", "getloadavg", "sysconf", "pathconf",
    },
    "signal": {
        "SIGKILL", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGPIPE",
        "SIGQUIT", "SIGSTOP", "SIGCONT", "alarm", "pause", "setitimer", "siginterrupt",
    },
    "select": {"poll", "epoll", "kqueue", "devpoll"},
}  # fmt: skip


def till_modules() -> list[Path]:
    files = sorted((ROOT / "pos_plugin").rglob("*.py")) + sorted((ROOT / "drivers").rglob("*.py"))
    return [f.relative_to(ROOT) for f in files if f.relative_to(ROOT) not in POSIX_ONLY_FILES]


def _platform_test(test: ast.expr) -> bool:
    text = ast.unparse(test)
    return "sys.platform" in text or "os.name" in text


def posix_only_uses(source: str) -> list[str]:
    """Every POSIX-only import, name and /dev path in ``source``, as "line: what"."""
    tree = ast.parse(source)
    found: list[str] = []
    # A /dev path chosen by a platform test ("COM3" if sys.platform == "win32" else ...)
    # is a per-OS default, not a POSIX assumption; a POSIX-only *name* is never let off.
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.IfExp | ast.If) and _platform_test(node.test):
            guarded.update(id(n) for n in ast.walk(node))
    aliases: dict[str, str] = {}  # local name -> module, for `import os as o`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                aliases[a.asname or top] = top
                if top in POSIX_MODULES:
                    found.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in POSIX_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            for a in node.names:
                if a.name in POSIX_NAMES.get(top, set()):
                    found.append(f"{node.lineno}: from {top} import {a.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id, node.value.id)
            if node.attr in POSIX_NAMES.get(module, set()):
                found.append(f"{node.lineno}: {module}.{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("/dev/")
            and id(node) not in guarded
        ):
            found.append(f"{node.lineno}: the path {node.value!r}")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def test_the_scan_finds_what_it_should() -> None:
    bad = (
        "import fcntl\nimport os as o\nfrom signal import SIGKILL\nimport signal\n"
        "o.openpty()\nsignal.SIGHUP\nos.symlink('a', 'b')\nport = '/dev/ttyUSB0'\n"
        "import select\nselect.epoll()\n"
    )
    found = posix_only_uses(bad)
    assert [f.split(":")[0] for f in found] == ["1", "3", "5", "6", "7", "8", "10"], found
    ok = "import os, signal, select\nos.replace('a', 'b')\nsignal.SIGTERM\nselect.select([], [], [], 0)\n"
    ok += "port = 'COM3' if sys.platform == 'win32' else '/dev/ttyUSB0'\n"
    assert posix_only_uses("if os.name == 'posix':\n    os.fork()\n") == ["2: os.fork"]
    assert posix_only_uses(ok + '"""Linux: /dev/ttyUSB0 in a sentence."""\n') == []


def test_no_posix_only_names_in_what_a_till_loads() -> None:
    modules = till_modules()
    assert Path("drivers/simulator/sim.py") in modules and Path("pos_plugin/cli.py") in modules
    problems = {
        str(m): uses for m in modules if (uses := posix_only_uses((ROOT / m).read_text("utf-8")))
    }
    assert problems == {}


def test_the_pty_line_is_the_posix_only_one_and_is_scanned_as_such() -> None:
    """The exclusion is not a blind spot: the pty module really is POSIX-only, and
    nothing but make_line (inside a function, on request) imports it."""
    assert posix_only_uses((ROOT / "drivers/simulator/pty_line.py").read_text("utf-8"))
    for m in till_modules():
        tree = ast.parse((ROOT / m).read_text("utf-8"))
        for node in tree.body:  # module level: imported by every till
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("drivers.simulator.pty_line",
                                           "pos_plugin.service.windows"), m  # fmt: skip


@pytest.mark.parametrize("path", [str(m) for m in till_modules()])
def test_every_till_module_imports(path: str) -> None:
    p = Path(path)
    if p in WINDOWS_ONLY_FILES and sys.platform != "win32":
        pytest.skip("needs pywin32 (Windows only)")
    name = ".".join(p.with_suffix("").parts)
    if name.endswith(".__main__"):
        name = name[: -len(".__main__")] + ".__main__"
    importlib.import_module(name.removesuffix(".__init__"))
