"""Loading a vendor library and calling it safely: the one place for ctypes.

Why everything native goes through here:

* **Calling convention per OS.** The sector's libraries are ``__stdcall`` DLLs
  on Windows (``ctypes.WinDLL``) and plain cdecl shared objects elsewhere
  (``ctypes.CDLL``). Every function returns a C ``long`` (32 bits on Windows,
  the platform's ``long`` elsewhere, which ``c_long`` follows).
* **Encoding.** The libraries read and write ``char*`` buffers in GBK on
  Windows (and, as far as anyone has seen, on Linux too). Text goes in and
  comes out through :meth:`NativeLibrary.encode` / :meth:`NativeLibrary.decode`
  only, so a non-GBK byte becomes a clear ``protocol_error``, never a
  ``UnicodeDecodeError`` deep in a parser. "gbk" is read and written as
  GB18030, its superset (identical on every GBK byte sequence), so that a rare
  character in a holder's name (生僻字), which newer libraries send as a GB18030
  four-byte sequence, does not stop the sale.
* **A call that hangs must not hang the agent.** A library call runs on the
  library's own worker thread; the caller waits with a deadline and its cancel
  event. A call that does not come back is *abandoned*: the thread is left to
  finish on its own (Python cannot kill it), the library is reported
  unavailable until it does, and then re-initialised before the next use.
* **One call at a time.** Vendor libraries are not re-entrant; a second call
  while one runs gets ``device_unavailable`` (busy) at once instead of queueing.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from drivers.errors import DeviceError, ErrorCode

T = TypeVar("T")

IS_WINDOWS = sys.platform == "win32"
DEFAULT_ENCODING = "gbk"  # the libraries' documented (Windows) and observed (Linux) encoding

BUSY_EN = "the reader library is busy with another call, wait or cancel it"
BUSY_ZH = "读卡器正忙，请稍候或取消当前操作"


class Busy(DeviceError):
    """Another call is in the library: the reader is fine, just occupied."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.DEVICE_UNAVAILABLE, BUSY_EN, BUSY_ZH)


class _Worker:
    """One daemon thread that runs library calls in order.

    Daemon, and not a ``ThreadPoolExecutor``: the interpreter joins executor
    threads at exit, so one call stuck in a vendor library would keep the agent
    from ever stopping.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)


class NativeLibrary:
    """A loaded vendor library: symbols, encoding, and calls on a worker thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        required: Iterable[str],
        optional: Iterable[str] = (),
        encoding: str = DEFAULT_ENCODING,
        label: str = "reader library",
    ) -> None:
        self.path = str(path)
        self.label = label
        self.encoding = encoding
        self._codec = "gb18030" if codecs.lookup(encoding).name == "gbk" else encoding
        self.convention = "stdcall (WinDLL)" if IS_WINDOWS else "cdecl (CDLL)"
        self._lib = _load(self.path, label)
        self._funcs: dict[str, Any] = {}
        missing = [name for name in required if not self._bind(name)]
        if missing:
            raise DeviceError(
                ErrorCode.DEVICE_UNAVAILABLE,
                f"{Path(self.path).name} is not the expected {label}: it lacks "
                f"{', '.join(missing)}; check the [reader] kind and library in config.toml",
                f"{Path(self.path).name} 不是所需的{_label_zh(label)}（缺少函数 "
                f"{', '.join(missing)}），请检查配置文件中的 [reader] kind 和 library",
            )
        for name in optional:
            self._bind(name)
        self._lock = threading.Lock()  # one call at a time
        self._worker: _Worker | None = None
        self._stuck: tuple[Future[Any], str, float] | None = None
        self.needs_reinit = False  # set after an abandoned call has come back

    def has(self, name: str) -> bool:
        return name in self._funcs

    # ------------------------------------------------------------------ text

    def buffer(self, size: int) -> ctypes.Array[ctypes.c_char]:
        """A zeroed output buffer of ``size`` bytes."""
        return ctypes.create_string_buffer(size)

    def encode(self, text: str) -> bytes:
        try:
            return text.encode(self._codec)
        except UnicodeEncodeError:
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR,
                f"a setting cannot be written in {self.encoding} for the {self.label}",
                f"参数含有无法用{self.encoding}编码的字符",
            ) from None

    def decode(self, buf: ctypes.Array[ctypes.c_char] | bytes, what: str) -> str:
        """The text up to the first NUL; a byte that is not valid text is a clear error."""
        raw = buf.value if isinstance(buf, ctypes.Array) else buf.split(b"\0", 1)[0]
        try:
            return raw.decode(self._codec)
        except UnicodeDecodeError:
            raise DeviceError(
                ErrorCode.PROTOCOL_ERROR,
                f"the {self.label} returned bytes that are not {self.encoding.upper()} text "
                f"from {what}; check the [reader] encoding or call the reader's vendor",
                f"{_label_zh(self.label)}在 {what} 返回了非{self.encoding.upper()}编码的数据，"
                "请检查配置或联系读卡器厂商",
            ) from None

    # ------------------------------------------------------------------ calls

    def call(
        self,
        name: str,
        *args: Any,
        timeout: float,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        """Call ``name(*args)`` on the worker; its C ``long`` result.

        Raises ``device_unavailable`` when busy, when an earlier call is still
        stuck, or when this one does not return within ``timeout`` (it is then
        abandoned); ``cancelled`` when ``cancel`` is set while waiting (the call
        is abandoned too: the library finishes it on its own).
        """
        func = self._funcs[name]
        self._check_stuck()
        if not self._lock.acquire(blocking=False):
            raise Busy()
        try:
            if self._worker is None:
                self._worker = _Worker(f"native-{Path(self.path).stem}")
            fut = self._worker.submit(lambda: int(func(*args)))
            deadline = time.monotonic() + timeout
            while True:
                try:
                    return fut.result(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
                except TimeoutError:
                    pass
                if cancelled is not None and cancelled():
                    self._abandon(fut, name)
                    raise DeviceError(ErrorCode.CANCELLED) from None
                if time.monotonic() >= deadline:
                    self._abandon(fut, name)
                    raise DeviceError(
                        ErrorCode.DEVICE_UNAVAILABLE,
                        f"the {self.label} did not return from {name} within {timeout:g} s; "
                        "the reader is marked unavailable: check it, unplug and replug it",
                        f"{_label_zh(self.label)}调用 {name} 超过 {timeout:g} 秒未返回，"
                        "读卡器已标记为不可用，请检查或重新插拔读卡器",
                    )
        finally:
            self._lock.release()

    @property
    def stuck(self) -> str | None:
        """The function an abandoned call is still in, or None."""
        self._check_stuck(raise_=False)
        return self._stuck[1] if self._stuck else None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def _abandon(self, fut: Future[Any], name: str) -> None:
        """Leave the running call to its thread; a fresh worker serves later calls."""
        self._stuck = (fut, name, time.monotonic())
        if self._worker is not None:
            self._worker.stop()  # its thread ends once the stuck call returns
            self._worker = None
        self.needs_reinit = True

    def _check_stuck(self, raise_: bool = True) -> None:
        if self._stuck is None:
            return
        fut, name, since = self._stuck
        if fut.done():
            self._stuck = None
            return
        if raise_:
            raise DeviceError(
                ErrorCode.DEVICE_UNAVAILABLE,
                f"the {self.label} has not come back from {name} "
                f"({time.monotonic() - since:.0f} s); unplug and replug the reader, "
                "or restart the agent if that does not help",
                f"{_label_zh(self.label)}的 {name} 调用仍未返回，请重新插拔读卡器，"
                "无效时请重启本程序",
            )

    def _bind(self, name: str) -> bool:
        try:
            func = getattr(self._lib, name)
        except AttributeError:
            return False
        func.restype = ctypes.c_long
        self._funcs[name] = func
        return True


def _load(path: str, label: str) -> Any:
    """``WinDLL`` on Windows (stdcall), ``CDLL`` elsewhere (cdecl)."""
    name = Path(path).name
    if not Path(path).is_file():
        raise DeviceError(
            ErrorCode.DEVICE_UNAVAILABLE,
            f"the {label} {path} does not exist; install the reader vendor's library "
            "and set [reader] library in config.toml to its full path",
            f"找不到{_label_zh(label)} {path}，请安装读卡器厂商提供的动态库，"
            "并在配置文件 [reader] library 中填写其完整路径",
        )
    try:
        if IS_WINDOWS:
            return ctypes.WinDLL(path)  # type: ignore[attr-defined,unused-ignore]
        return ctypes.CDLL(path)
    except OSError as exc:
        raise DeviceError(
            ErrorCode.DEVICE_UNAVAILABLE,
            f"the {label} {name} cannot be loaded ({exc}); it may be built for another "
            "system or 32/64-bit Python, or miss a DLL it depends on",
            f"无法加载{_label_zh(label)} {name}，可能与本机系统或 Python 位数（32/64位）不符，"
            "或缺少其依赖的动态库",
        ) from None


def _label_zh(label: str) -> str:
    return {"voucher library": "电子凭证动态库"}.get(label, "读卡器动态库")
