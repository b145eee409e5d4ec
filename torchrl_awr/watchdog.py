"""Bounded waits on a collector: a run never hangs on a worker that died or stopped answering.

TorchRL's collectors wait on queues without a bound in places (a multi-process collector's
weight sync waits for every worker's acknowledgement), and nothing bounds an environment that
hangs. :class:`CollectorWatchdog` bounds each wait of the trainer on its collector (a batch, a
weight sync): a thread watches the clock and the collector's worker processes, and when a wait
runs past its limit or a worker is gone it signals the main thread, whose handler raises
:class:`CollectorStalled` inside the blocked call. A call that holds the main thread in native
code, deaf to signals (Ray's ``ray.wait``), is ended by ending the collector's workers (processes
killed, Ray actors killed), which makes it return with an error.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

ALARM = signal.SIGALRM
RESEND_S = 2.0  # the alarm is sent again while the main thread has not left the wait
ESCALATE_S = 5.0  # after this long deaf to the alarm, the collector's workers are ended


class CollectorStalled(BaseException):
    """A wait on the collector ran past its limit or lost a worker. A ``BaseException``, like
    ``KeyboardInterrupt``, so that the ``except Exception`` of the library code it interrupts
    cannot swallow it."""


class CollectorWatchdog:
    """Limits every wait on ``collector`` to ``max(timeout, factor x the slowest batch so far)``
    seconds (the first batch, which includes the workers' start, counts ``timeout`` alone), and
    ends a wait within ``poll`` seconds of a worker process dying.

    Only waits in the main thread are bounded (signals reach the main thread only); ``timeout``
    None disables the watchdog.
    """

    def __init__(self, collector, timeout: float | None = 300.0, *, factor: float = 10.0, poll: float = 0.5):
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout={timeout} must be > 0 seconds (None disables the watchdog).")
        self.timeout = timeout
        self.factor = factor
        self.poll = poll
        self.slowest = 0.0  # seconds, of the batches after the first
        self._batches = 0
        self._collector = collector
        self._procs = list(getattr(collector, "procs", None) or [])
        self._armed = False
        self._reason: str | None = None
        self._what = ""
        self._limit = 0.0
        self._done = threading.Event()

    @property
    def reason(self) -> str | None:
        """Why the last wait was ended, if it was."""
        return self._reason

    def limit(self) -> float:
        """The longest the next wait may last, in seconds."""
        return max(self.timeout, self.factor * self.slowest)

    @contextlib.contextmanager
    def waiting(self, what: str, *, batch: bool = False) -> Iterator[None]:
        """Bounds the wait in the block (``what``: named in the error); ``batch`` counts its time
        among the batches."""
        if self.timeout is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        tic = time.monotonic()
        self._what, self._limit, self._reason = what, self.limit(), None
        self._done = threading.Event()
        previous = signal.signal(ALARM, self._on_alarm)
        self._armed = True
        watcher = threading.Thread(target=self._watch, args=(threading.main_thread().ident, tic), daemon=True)
        watcher.start()
        try:
            yield
        finally:
            try:
                self._armed = False  # from here on an alarm is ignored
            finally:
                self._done.set()
                watcher.join()
                signal.signal(ALARM, previous)
        if batch:
            if self._batches:
                self.slowest = max(self.slowest, time.monotonic() - tic)
            self._batches += 1

    def _dead_worker(self) -> str | None:
        for proc in self._procs:
            code = proc.exitcode
            if code is not None:
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                return f"collector worker process {proc.pid} is gone ({how})"
        return None

    def _watch(self, main_thread: int, tic: float) -> None:
        """Runs beside one wait: trips it when a worker is gone or its time is up, and sends the
        alarm again until the main thread has left the wait."""
        tripped = None
        while not self._done.wait(self.poll):
            if self._reason is None:
                dead = self._dead_worker()
                if dead:
                    self._reason = f"{dead}, while waiting for {self._what}"
                elif time.monotonic() - tic > self._limit:
                    self._reason = f"no answer from the collector within {self._limit:.0f} s, waiting for {self._what}"
                else:
                    continue
                tripped = time.monotonic()
            signal.pthread_kill(main_thread, ALARM)
            if time.monotonic() - tripped > ESCALATE_S:
                self._end_workers()
            self._done.wait(RESEND_S)

    def _end_workers(self) -> None:
        """Kills the collector's worker processes and Ray actors, so that a wait in native code
        returns (with an error)."""
        for proc in self._procs:
            with contextlib.suppress(Exception):
                proc.kill()
        ray = sys.modules.get("ray")
        for actor in getattr(self._collector, "remote_collectors", None) or []:
            if ray is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor)

    def _on_alarm(self, signum, frame) -> None:
        if self._armed and self._reason is not None:
            raise CollectorStalled(self._reason)
