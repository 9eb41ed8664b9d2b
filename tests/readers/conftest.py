"""The stub reader library: C source in this folder, compiled with the system's cc per session.

The backend under test and the test's own control handle load the same file,
so the dynamic loader gives both one copy of the stub's state: the test
inserts a card or unplugs the reader, the backend sees it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.readers.device import LibraryReader
from drivers.readers.native import NativeLibrary
from drivers.readers.sscard import OPTIONAL, REQUIRED, SSCardBackend

SOURCE = Path(__file__).with_name("stub_reader.c")
SUFFIX = ".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so"

# 张伟 of the example world (pos_plugin/data/world.example.json), as a reader returns him.
ZHANG_WEI_ID = "110105198005120319"
ZHANG_WEI = {
    "region_code": "110105",
    "id_number": ZHANG_WEI_ID,
    "card_no": "B11000001",
    "card_sn": "4D83237335790FB4875C7227C23D7360",
    "holder_name": "张伟",
    "atr": "3B6D000080318065B0",
    "spec_version": "3.00",
    "issue_date": "20200101",
    "expiry_date": "20300101",
    "terminal_no": "110105000001",
    "device_no": "STUB-RDR-0001",
}


def card_text(**overrides: str) -> str:
    """The 11 fields, each ending with '|'; ``drop=name`` leaves one out."""
    fields = ZHANG_WEI | overrides
    drop = fields.pop("drop", None)
    return "".join(f"{v}|" for k, v in fields.items() if k != drop)


def _compile(out: Path, *defines: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip(
            "no C compiler (cc) on this machine: the reader-library tests build a stub library"
        )
    cmd = [cc, "-shared", "-fPIC", "-O1", *defines, "-o", str(out), str(SOURCE)]
    if sys.platform == "win32":
        cmd.append("-Wl,--kill-at")  # undecorated stdcall names, as the vendors' DLLs export
    else:
        cmd.append("-lpthread")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"the stub library did not compile:\n{done.stderr}")
    return out


@pytest.fixture(scope="session")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("stub") / f"libstubreader{SUFFIX}")


@pytest.fixture(scope="session")
def stub_no_verify_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same library without iVerifyPIN: a library with a missing symbol."""
    return _compile(
        tmp_path_factory.mktemp("stub") / f"libstubnoverify{SUFFIX}", "-DSTUB_OMIT_VERIFY"
    )


class Stub:
    """The test's handle on the stub: what the customer and the reader do."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.stub_set.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self.lib.stub_get.argtypes = [ctypes.c_char_p]
        self.lib.stub_get.restype = ctypes.c_int
        self.lib.stub_text.argtypes = [ctypes.c_char_p]
        self.lib.stub_text.restype = ctypes.c_char_p

    def set(self, key: str, value: str | bytes | int = "") -> None:
        raw = value if isinstance(value, bytes) else str(value).encode("ascii")
        self.lib.stub_set(key.encode(), raw)

    def get(self, key: str) -> int:
        return int(self.lib.stub_get(key.encode()))

    def text(self, key: str) -> str:
        return bytes(self.lib.stub_text(key.encode()) or b"").decode("gbk")

    def insert(self, text: str | bytes | None = None) -> None:
        """A card goes in; its record as the library returns it (GBK)."""
        raw = text if isinstance(text, bytes) else (text or card_text()).encode("gbk")
        self.set("card", raw)
        self.set("present", 1)

    def remove(self) -> None:
        self.set("present", 0)

    def settle(self, timeout: float = 5.0) -> None:
        """End any hang and wait until no call is inside the library."""
        self.set("release")
        end = time.monotonic() + timeout
        while self.get("in_card") > 0 and time.monotonic() < end:
            time.sleep(0.01)


@pytest.fixture
def stub(stub_path: Path) -> Iterator[Stub]:
    s = Stub(stub_path)
    s.set("reset")
    yield s
    s.settle()
    s.set("reset")


def sscard_backend(path: Path, **kw: object) -> SSCardBackend:
    lib = NativeLibrary(path, required=REQUIRED, optional=OPTIONAL)
    return SSCardBackend(lib, **kw)  # type: ignore[arg-type]


@pytest.fixture
def reader(stub: Stub) -> Iterator[LibraryReader]:
    """An opened SSCardDriver reader on the stub, with short timeouts."""
    r = LibraryReader(
        sscard_backend(stub.path), call_timeout=1.0, poll_interval=0.05, pin_grace=1.0
    )
    r.open()
    yield r
    stub.settle()
    r.close()
