"""Run a pure function in a child process, each call under a time budget that is a guarantee.

One bad input must not hold a worker: a valid MIDI file with one absurd delta time keeps music21
busy for minutes. The budget must hold where Dataflow runs DoFns in threads and inside C/C++ code
(a parser such as symusic), and nothing running in the caller's process can promise that:
``signal.alarm`` works only in the main thread, and an exception injected into a thread
(``PyThreadState_SetAsyncExc``) waits until C code returns to the interpreter. A child process can
always be killed. So :class:`BudgetedFunction` keeps one long-lived child per instance (a DoFn holds
one from ``setup`` to ``teardown``), sends it each call's arguments and waits for the result; past
the budget it kills the child, raises :class:`OverBudget` and starts a fresh one.

The budget counts the child's CPU time (user + system, read from ``/proc`` while the call runs), not
the clock: on a busy machine a parse takes longer by the clock but not in CPU time, so the same
files give the same dataset however loaded the machine is. A child that sleeps, or that a starved
machine never runs, uses no CPU; a much larger wall-clock backstop (:data:`WALL_FACTOR` times the
budget, at least :data:`WALL_EXTRA_SECONDS` more than it) stops it. :class:`OverBudget` says which
limit was hit. Where there is no ``/proc`` (not Linux), the budget is the clock's, as before.

Why the child is a fresh interpreter (``python -m preprocessing.budgeted_child``) rather than a fork
or ``multiprocessing``: forking a Beam worker copies a process that runs gRPC threads (a lock held
by one of them stays held in the child), and ``multiprocessing``'s spawn and forkserver re-import
the parent's ``__main__``, Beam's worker module, in every child. The fresh child imports only the
function's module, freezes what it imported out of the garbage collector's sight (``gc.freeze``, as
the workers do), and says it is ready; the budget of a call starts when the child is ready and its
arguments are sent, so start-up never counts against an input.

The child never outlives its parent: a thread in the child reads the requests, and when the
parent goes away (job finished, crashed, killed, Ctrl-C) the pipe closes and that thread ends the
child at once, even mid-call. The parent also kills it on :meth:`BudgetedFunction.stop`, when the
instance is garbage-collected and at interpreter exit (``weakref.finalize``). The child runs in a
session of its own, so a terminal's Ctrl-C reaches only the parent, which decides: a child still
starting (importing music21) when Ctrl-C came would otherwise print Python's fatal start-up error
to the terminal; the pipeline's launcher kills every child of its job
(:func:`preprocessing.direct_runner.stop_local_workers`), even one inside C code.

Wire format: frames of an 8-byte big-endian length and a pickle, requests on the child's stdin,
replies on a copy of its stdout; the child's fd 1 then points at stderr, so a function that prints
cannot corrupt a reply. POSIX only (``select`` on pipes), like Beam's workers.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

CHILD_MODULE = "preprocessing.budgeted_child"
READY = "ready"
_HEADER = struct.Struct(">Q")
WALL_FACTOR = 10.0
WALL_EXTRA_SECONDS = 300.0
"""The wall-clock backstop of a budget of ``s`` CPU seconds: ``max(WALL_FACTOR * s, s +
WALL_EXTRA_SECONDS)`` (600 s for the pipeline's default 60 s, 301 s for 1 s)."""
POLL_SECONDS = 0.05
"""How often a waiting parent reads the child's CPU time (a reply ends the wait at once)."""


class BudgetError(Exception):
    """A call that did not return a result: over budget, child died, or the function raised."""


CPU = "cpu"
WALL = "wall"


class OverBudget(BudgetError):
    """The call took longer than the budget; its child was killed (a fresh one is starting).
    ``limit`` says which: :data:`CPU` (its CPU time) or :data:`WALL` (the wall-clock backstop)."""

    def __init__(self, seconds: float, limit: str = CPU):
        what = "of CPU time" if limit == CPU else "by the clock (sleeping, or starved of CPU)"
        super().__init__(f"took more than {seconds:g} s {what}; stopped")
        self.seconds = seconds
        self.limit = limit


class ChildDied(BudgetError):
    """The child died during the call: a crash, out of memory, or killed from outside."""


class CallFailed(BudgetError):
    """The function raised; only its type's name and message cross the process boundary, so any
    exception comes back, picklable or not."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message


class StartFailed(RuntimeError):
    """The child could not start (import error, no interpreter): the environment's fault, not an
    input's."""


class _TimedOut(Exception):
    pass


# --------------------------------------------------------------------------- frames


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    """``size`` bytes from ``fd``; :class:`EOFError` if it closes first, ``_TimedOut`` past
    ``deadline``."""
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise _TimedOut()
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("the pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> bytes:
    (size,) = _HEADER.unpack(read_exactly(fd, _HEADER.size, deadline))
    return read_exactly(fd, size, deadline)


# --------------------------------------------------------------------------- the parent's side


def function_reference(function: Callable | str) -> str:
    """``module:qualified.name``, what the child imports; the function must be importable by
    name."""
    if isinstance(function, str):
        return function
    qualname = getattr(function, "__qualname__", "")
    if not qualname or "<" in qualname or function.__module__ == "__main__":
        raise ValueError(f"{function!r} cannot be imported by name in a child process")
    return f"{function.__module__}:{qualname}"


def resolve(reference: str) -> Callable:
    module_name, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for name in qualname.split("."):
        target = getattr(target, name)
    return target


def death_reason(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" + (" (out of memory?)" if returncode == -signal.SIGKILL else "")
    return f"exited with status {returncode}"


def exit_reason(process: subprocess.Popen) -> str:
    """Why ``process`` ended, once its pipe has closed (it is exiting: give it a moment to be
    reaped)."""
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return death_reason(process.poll())


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user + system, every thread) process ``pid`` has used so far, from Linux's
    ``/proc``; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_environment() -> dict[str, str]:
    """The parent's environment, with its module search path: the child imports the same code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}


def _stop_process(process: subprocess.Popen) -> None:
    """Kill and reap ``process`` (a finalizer: it must not hold a reference to its owner)."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass


class BudgetedFunction:
    """Call ``function`` in a long-lived child process, each call limited to ``seconds``.

    ``function`` is a module-level function or its ``"module:name"``; its arguments and result must
    pickle. A call returns the result, or raises :class:`OverBudget` (the child was killed),
    :class:`ChildDied` or :class:`CallFailed` (what the function raised); after any of them the next
    call runs in a fresh child. :class:`StartFailed` means no child could start. One caller at a
    time: a Beam DoFn instance is never called from two threads at once.
    """

    def __init__(
        self,
        function: Callable | str,
        seconds: float,
        *,
        start_seconds: float = 300.0,
        wall_seconds: float | None = None,
    ):
        if not seconds > 0:
            raise ValueError(f"the budget must be a positive number of seconds, not {seconds!r}")
        self.reference = function_reference(function)
        self.seconds, self.start_seconds = seconds, start_seconds
        self.wall_seconds = wall_seconds or max(WALL_FACTOR * seconds, seconds + WALL_EXTRA_SECONDS)
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child if none is running; it imports the function's module while the caller
        goes on."""
        if self._process is not None and self._process.poll() is None:
            return
        self.stop()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, self.reference],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=child_environment(),
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent only
            )
        except OSError as exc:
            raise StartFailed(
                f"could not start a child process for {self.reference}: {exc}"
            ) from exc
        self._finalizer = weakref.finalize(self, _stop_process, self._process)
        self._ready = False

    def stop(self) -> None:
        """Kill the child, if any (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self._process = None
        self._finalizer = None
        self._ready = False

    def __enter__(self) -> BudgetedFunction:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self.start()  # not started, or died between calls: no input was in flight
        if self._ready:
            return
        try:
            reply = pickle.loads(
                read_frame(self._process.stdout.fileno(), time.monotonic() + self.start_seconds)
            )
        except (_TimedOut, EOFError, OSError) as exc:
            reason = exit_reason(self._process) if not isinstance(exc, _TimedOut) else ""
            self.stop()
            detail = (
                f"not ready within {self.start_seconds:g} s"
                if isinstance(exc, _TimedOut)
                else reason
            )
            raise StartFailed(
                f"the child process for {self.reference} failed to start: {detail} "
                "(its error, if any, is on stderr)"
            ) from None
        if reply != READY:
            self.stop()
            raise StartFailed(
                f"the child process for {self.reference} sent {reply!r} instead of {READY!r}"
            )
        self._ready = True

    def __call__(self, *args: Any) -> Any:
        self._wait_until_ready()
        process = self._process
        try:
            write_frame(process.stdin.fileno(), pickle.dumps(args, pickle.HIGHEST_PROTOCOL))
            reply = pickle.loads(self._reply(process))
        except OverBudget:
            self._replace()
            raise
        except (EOFError, OSError):
            reason = exit_reason(process)
            self._replace()
            raise ChildDied(reason) from None
        if reply[0] == "ok":
            return reply[1]
        raise CallFailed(reply[1], reply[2])

    def _reply(self, process: subprocess.Popen) -> bytes:
        """The child's reply frame, waited for while its CPU time stays within the budget and the
        clock within the backstop; :class:`OverBudget` otherwise."""
        fd = process.stdout.fileno()
        started = time.monotonic()
        cpu_before = cpu_seconds(process.pid)
        counted = cpu_before is not None  # else (no /proc) the clock is the budget, as before
        deadline = started + (self.wall_seconds if counted else self.seconds)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OverBudget(*((self.wall_seconds, WALL) if counted else (self.seconds, CPU)))
            if select.select([fd], [], [], min(POLL_SECONDS, left))[0]:
                try:
                    return read_frame(fd, deadline)
                except _TimedOut:
                    continue  # half a frame, then nothing until the deadline
            used = cpu_seconds(process.pid) if counted else None
            if used is not None and used - cpu_before > self.seconds:
                raise OverBudget(self.seconds, CPU)

    def _replace(self) -> None:
        self.stop()
        self.start()


# --------------------------------------------------------------------------- the child's side


def _pump(fd: int, inbox: queue.SimpleQueue) -> None:
    """Read requests into ``inbox``; when the parent closes the pipe (or dies), end the process
    now."""
    try:
        while True:
            inbox.put(pickle.loads(read_frame(fd)))
    except BaseException:  # noqa: BLE001 - EOF or a broken frame: either way the parent is gone
        pass
    os._exit(0)


def serve(reference: str) -> None:
    """The child's loop: import the function, say ready, then answer each request in turn."""
    # Ctrl-C ends the child at once, even inside C code
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    requests, replies = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # the function's prints go to stderr, never into a reply
    function = resolve(reference)
    gc.collect()
    gc.freeze()  # what the imports made lives as long as the child: keep full collections off it
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_pump, args=(requests, inbox), daemon=True).start()
    write_frame(replies, pickle.dumps(READY))
    while True:
        args = inbox.get()
        try:
            reply: tuple = ("ok", function(*args))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            reply = ("error", type(exc).__name__, str(exc))
        try:
            payload = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is the function's error
            payload = pickle.dumps(
                ("error", type(exc).__name__, f"the result cannot be sent back: {exc}")
            )
        write_frame(replies, payload)


if __name__ == "__main__":
    serve(sys.argv[1])
