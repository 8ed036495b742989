"""Stopping a run cleanly on SIGINT (Ctrl-C) and SIGTERM (what clusters send before preemption).

The command lines train in jitted chunks with the host in between. `StopRequest` catches the
first SIGINT or SIGTERM and only records it; the report loop sees it at the next chunk
boundary, saves a checkpoint, prints the command that resumes the run, and the process exits
with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), without a traceback. A second
signal stops the process at once.

Python runs signal handlers only in the main thread, between bytecodes, so a main thread that
waits inside a long C++ call (an XLA compile, a chunk on the device) would only notice a signal
once that call returns. `wait` runs such calls on a helper thread while the main thread waits
on an event, which signal handlers do interrupt: the second signal then takes effect at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Catches SIGINT and SIGTERM while it is entered (`with StopRequest() as stop:`).

    Attributes:
      signum: the first signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended."""
        return 128 + int(self.signum or 0)

    def request(self, signum: int) -> None:
        """Records a stop as if `signum` had arrived (another process's signal, a test)."""
        if self.signum is None:
            self.signum = int(signum)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            _say(f"\n{signal.Signals(signum).name} again: stopping at once\n")
            os._exit(128 + signum)
        self.signum = signum
        _say(f"\n{signal.Signals(signum).name}: stopping after the current chunk, with a "
             "checkpoint (press Ctrl-C again to stop at once)\n")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _say(text: str) -> None:
    """Writes to stderr from a signal handler (no buffered stream that may be mid-write)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError, RuntimeError):
        pass
    os.write(2, text.encode())


def wait(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, run so that signal handlers of the main thread run while it waits.

    On the main thread the call runs on a helper thread and the main thread waits for it on an
    event (which a signal interrupts to run its handler, then waits on); elsewhere it is a plain
    call. Exceptions are re-raised here.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = err
        finally:
            done.set()

    threading.Thread(target=run, name="acjax-wait", daemon=True).start()
    while not done.wait(0.5):
        pass
    if "error" in box:
        raise box["error"]
    return box["value"]
