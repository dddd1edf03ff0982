"""Several budgeted child processes fed from one queue: every core busy until the last input.

On the local DirectRunner the files used to be dealt out beforehand, one size-balanced group per
Beam worker process, each parsing in its own child. File size predicts music21's parse time only
roughly, so one worker finished up to a second before the other, and each worker process cost its
start-up (importing Beam) on top of its child's. :class:`BudgetedPool` keeps ``processes``
children (:class:`preprocessing.budgeted_child.BudgetedFunction`, each with its budget) in one
process and hands the next input to whichever child is free, so the work balances itself as it
goes: fed largest first, the last inputs to finish are the small ones. The measurements are in
``docs/PERFORMANCE.md`` ("One queue, a child per core").

Each child has a thread in the caller's process that sends it work and waits for the reply; those
threads spend their time in ``select`` (no GIL held), so the parsing runs in parallel in the
children. The threads are daemons and every child is killed on :meth:`BudgetedPool.stop`, so an
interrupted caller leaves nothing behind (the children also end when their pipe closes).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from preprocessing.budgeted_child import BudgetedFunction

Work = Callable[[BudgetedFunction], Any]
"""What a pool thread does with its child: e.g. read a file and call the child on its bytes."""
Done = tuple[Hashable, Any, BaseException | None]
"""``(key, result, None)`` or ``(key, None, the exception the work raised)``."""

_STOP = object()
WAIT_SECONDS = 0.5
"""How long one wait for a result blocks before looking again (Ctrl-C is never held longer)."""


class BudgetedPool:
    """``processes`` budgeted children of ``function``, and a thread each that feeds it.

    :meth:`submit` queues work; :meth:`results` gives finished work back in the order it
    finishes. Work that raises (an input over budget, a child that died, what the function
    raised) comes back with its exception, and the thread's child is replaced as
    :class:`~preprocessing.budgeted_child.BudgetedFunction` replaces it; the other children never
    notice. One caller at a time, like a Beam DoFn instance.
    """

    def __init__(self, function: Callable | str, seconds: float, processes: int):
        if processes < 1:
            raise ValueError(f"a pool needs at least one process, not {processes}")
        self.processes = processes
        self._children = [BudgetedFunction(function, seconds) for _ in range(processes)]
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.in_flight = 0

    @property
    def pids(self) -> list[int | None]:
        return [child.pid for child in self._children]

    def start(self) -> None:
        """Start every child (each imports the function's module while the caller goes on) and
        its thread."""
        self._stopping.clear()
        for child in self._children:
            child.start()
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._serve, args=(child,), daemon=True)
                for child in self._children
            ]
            for thread in self._threads:
                thread.start()

    def _serve(self, child: BudgetedFunction) -> None:
        while True:
            request = self._requests.get()
            if request is _STOP:
                return
            key, work = request
            try:
                done: Done = (key, work(child), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                done = (key, None, exc)
            if self._stopping.is_set():
                child.stop()  # a call that stop() cut short replaced its child: not wanted now
            self._done.put(done)

    def submit(self, key: Hashable, work: Work) -> None:
        """Queue ``work``; the next free child's thread runs it."""
        if not self._threads:
            self.start()
        self._requests.put((key, work))
        self.in_flight += 1

    def results(self, keep_in_flight: int = 0) -> Iterator[Done]:
        """Finished work: waits until at most ``keep_in_flight`` items are still running, then
        gives whatever else has finished without waiting. ``results()`` drains the pool."""
        while self.in_flight > 0:
            if self.in_flight > keep_in_flight:
                try:
                    done = self._done.get(timeout=WAIT_SECONDS)
                except queue.Empty:
                    continue
            else:
                try:
                    done = self._done.get_nowait()
                except queue.Empty:
                    return
            self.in_flight -= 1
            yield done

    def stop(self) -> None:
        """Kill every child and end the threads (idempotent). Work still running comes back as
        :class:`~preprocessing.budgeted_child.ChildDied` to no one: call :meth:`results` first."""
        self._stopping.set()
        for _ in self._threads:
            self._requests.put(_STOP)
        for child in self._children:
            child.stop()
        self._threads = []
