"""What keeps one job from taking the run down: a time limit and a one-line account of any failure.

`run_job` runs every job inside `time_limit` and turns whatever escapes it (an exception, `SystemExit`,
`MemoryError`, `JobTimeout`) into a failed record; only KeyboardInterrupt (Ctrl-C, and SIGTERM as `Terminated`)
stops the run, even when a library inside the job swallows it (`InterruptLatch`). The time limit of the serial
path is SIGALRM (`signal.setitimer`), which works in the main thread of a POSIX process: it interrupts Python
code, but not a single long call into C that never returns to the interpreter; an executor running jobs in
child processes can enforce its limit by ending the child instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scldbench.errors import JobTimeout, ScldbenchError, Terminated


def can_time_limit() -> bool:
    """True where `time_limit` can interrupt: the main thread of a process on a system with SIGALRM."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise JobTimeout in this (main) thread once `seconds` have passed; no limit for None or off the main thread."""
    if not seconds or not can_time_limit():
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise JobTimeout(f"timed out after {seconds:g} s (the suite's time limit for this generator)")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def raise_terminated(signum: int, frame: Any) -> None:
    """SIGTERM handler: a scheduler's kill ends a run (or a worker) like Ctrl-C, as `Terminated`."""
    raise Terminated()


class InterruptLatch:
    """Remembers a Ctrl-C or SIGTERM raised while a job runs, so that the run stops even where a library catches
    the KeyboardInterrupt and turns it into something else (Lightning's trainer, inside scvi-tools, answers it with
    `sys.exit(1)`, which alone would read as a failed job and let the run go on).

    Wraps the Python-level SIGINT and SIGTERM handlers in place while the job runs (main thread only): a handler
    that raises KeyboardInterrupt (Python's Ctrl-C handler, the CLI's SIGTERM handler) has its exception kept
    in `interrupt` before it propagates.
    """

    def __init__(self) -> None:
        self.interrupt: KeyboardInterrupt | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptLatch:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(signum)
                if callable(previous):
                    self._previous[signum] = previous
                    signal.signal(signum, self._latching(previous))
        return self

    def _latching(self, handler: Any) -> Any:
        def latching(signum: int, frame: Any) -> None:
            try:
                handler(signum, frame)
            except KeyboardInterrupt as exc:
                self.interrupt = exc
                raise

        return latching

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def failure_message(exc: BaseException) -> str:
    """One line saying why a job failed, quoting the plugin's own message where it gave one."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ScldbenchError | JobTimeout):
        return text
    if isinstance(exc, SystemExit):
        return f"the generator called sys.exit({exc.code!r}); the job was stopped and the run went on"
    if isinstance(exc, MemoryError):
        return f"out of memory (MemoryError{': ' + text if text else ''}); try fewer cells or a smaller model"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
