"""Tuning for Beam's DirectRunner, the runner that preprocesses on a laptop; other runners are
untouched.

Parsing is CPU-bound and runs in budgeted child processes (:mod:`preprocessing.budgeted_child`), so
the DirectRunner itself need not be parallel: by default it runs in this process (``in_memory``)
and its one parse step keeps a child per core busy from one queue, fed largest file first
(:mod:`preprocessing.budgeted_pool`). That balances the cores as the work goes, where dealing the
files out to worker processes beforehand (the DirectRunner splits a stage's input once, statically,
and never rebalances) left one core idle for the last second or so, and it saves each worker
process's start-up. A user who asks for ``multi_processing`` gets it: the files are then dealt into
one size-balanced group per worker, each worker parsing with its share of the cores, and each
worker freezes its start-up objects out of the garbage collector's sight. On Dataflow and other
runners the files are spread by a plain ``Reshuffle``, one child per DoFn instance, and nothing
else changes. The measurements behind each choice are in ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import heapq
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindows

from preprocessing import quiet

BEAM_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
_frozen = False


def is_direct_runner(runner: str | None) -> bool:
    """True for Beam's DirectRunner under any of its spellings (None is Beam's default: the
    DirectRunner)."""
    if runner is None:
        return True
    return isinstance(runner, str) and runner.rsplit(".", 1)[-1].lower() in (
        "directrunner",
        "direct",
    )


def _has_flag(beam_args: Sequence[str], name: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in beam_args)


LOCAL_RUNNING_MODE = "in_memory"
"""The DirectRunner's running mode unless the user chooses one: see the module's docstring."""

WORKER_LOG_LEVEL = "ERROR"
"""The DirectRunner's worker processes log at this level unless ``--verbose`` (their WARNING
lines are Beam's start-up notices, relayed to the user's terminal; a file that fails to parse is
counted in the summary and named in ``dead_letter.jsonl`` all the same)."""


def with_local_defaults(beam_args: Sequence[str]) -> list[str]:
    """``beam_args`` with the runner made explicit and, for the DirectRunner, the job run in this
    process unless the user chose a running mode or a worker count (the parse step's children use
    every core: :func:`parse_processes`), and quiet workers unless ``--verbose`` or the user chose
    their log level."""
    beam_args = list(beam_args)
    runner_flag = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    runner_flag.add_argument("--runner", default=None)
    runner = runner_flag.parse_known_args(beam_args)[0].runner
    if runner is None:
        runner = "DirectRunner"
        beam_args.append(f"--runner={runner}")
    if is_direct_runner(runner) and not _has_flag(beam_args, "--direct_running_mode"):
        # a worker count asks for worker processes, as it did when they were the default
        asked_for_workers = _has_flag(beam_args, "--direct_num_workers")
        mode = "multi_processing" if asked_for_workers else LOCAL_RUNNING_MODE
        beam_args.append(f"--direct_running_mode={mode}")
    if (
        is_direct_runner(runner)
        and not quiet.verbose()
        and not _has_flag(beam_args, "--default_sdk_harness_log_level")
    ):
        beam_args.append(f"--default_sdk_harness_log_level={WORKER_LOG_LEVEL}")
    return beam_args


def direct_runner_workers(options: PipelineOptions) -> int | None:
    """The DirectRunner's worker count for these options; None for any other runner."""
    if not is_direct_runner(options.view_as(StandardOptions).runner):
        return None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "in_memory":
        return 1
    return direct.direct_num_workers or os.cpu_count() or 1


def parse_processes(options: PipelineOptions) -> int:
    """How many parse children each DoFn instance of the parse step keeps busy: on the DirectRunner
    every core shared out over its worker processes (all of them in the default in-memory mode),
    elsewhere one (Dataflow runs a DoFn instance per worker thread and rebalances the work
    itself)."""
    workers = direct_runner_workers(options)
    if workers is None:
        return 1
    return max(1, (os.cpu_count() or 1) // workers)


# --------------------------------------------------------------------------- spreading the files


def balance_by_size(sizes: Sequence[int], buckets: int) -> list[int]:
    """Assign items to ``buckets`` so that the buckets' total sizes come out close: largest first,
    each to the bucket with the least so far (LPT, within 4/3 of the best possible largest bucket).

    Returns the bucket of each item, in the items' order. Ties go to the lower item index and the
    lower bucket, so the assignment depends on the sizes alone.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    assignment = [0] * len(sizes)
    heap = [(0, bucket) for bucket in range(buckets)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, bucket = heapq.heappop(heap)
        assignment[index] = bucket
        heapq.heappush(heap, (load + sizes[index], bucket))
    return assignment


class BalanceBySize(beam.DoFn):
    """Key each file of a bundle by a worker bucket, balancing the buckets by file size."""

    def __init__(self, buckets: int):
        self.buckets = buckets
        self._files: list = []

    def start_bundle(self) -> None:
        self._files = []

    def process(self, metadata) -> None:
        self._files.append(metadata)

    def finish_bundle(self) -> Iterator:
        sizes = [metadata.size_in_bytes for metadata in self._files]
        for metadata, bucket in zip(self._files, balance_by_size(sizes, self.buckets)):
            yield GlobalWindows.windowed_value((bucket, metadata))
        self._files = []


def largest_first(bucket_files: tuple) -> list:
    """One worker's group of files, largest first: a pool of parse children fed in this order
    ends with the small files, so the children finish close together (LPT order)."""
    return sorted(bucket_files[1], key=lambda metadata: (-metadata.size_in_bytes, metadata.path))


class SpreadFiles(beam.PTransform):
    """Spread the matched files over the workers that parse them.

    ``MatchFiles`` lists on one worker; without a fusion break every parse would run there too. With
    ``local_workers`` (the DirectRunner) the files are dealt into exactly one group per worker
    (one in the default in-memory mode), balanced by file size (music21's parse time follows the
    size, roughly), then grouped: after a ``GroupByKey`` the DirectRunner hands each worker one key,
    whose files come out largest first. Otherwise a ``Reshuffle``, and the runner (Dataflow)
    rebalances work dynamically.
    """

    def __init__(self, local_workers: int | None = None):
        super().__init__()
        self.local_workers = local_workers

    def expand(self, files):
        if not self.local_workers:
            return files | "Reshuffle" >> beam.Reshuffle()
        return (
            files
            | "BalanceBySize" >> beam.ParDo(BalanceBySize(self.local_workers))
            | "GroupPerWorker" >> beam.GroupByKey()
            | "Ungroup" >> beam.FlatMap(largest_first)
        )


# --------------------------------------------------------------------------- worker processes


def in_beam_worker_process() -> bool:
    """True in a process that exists to run Beam work: the SDK worker that the DirectRunner's
    multi-processing mode and Dataflow start as
    ``python -m apache_beam.runners.worker.sdk_worker_main``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == BEAM_WORKER_MAIN


def freeze_long_lived_objects() -> None:
    """Move every object this process holds now out of the garbage collector's sight, once.

    A worker carries Beam, protobuf, gRPC and music21, a few hundred thousand long-lived objects,
    and music21 allocates so heavily while parsing that full collections walk all of them again and
    again (and once more at exit). ``gc.freeze()``, Python's documented tool for this, moves them to
    a permanent generation; garbage is collected first so that none of it is kept, and objects
    created later are collected as usual. Called from ``ParseMidi.setup``, only in worker processes
    (``multi_processing``).
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


# --------------------------------------------------------------------------- Ctrl-C


LOCAL_WORKERS_ENV = "LSTM_COMPOSER_LOCAL_WORKERS"
"""Set by the launcher of a DirectRunner job to its own process id: every process below it (the
workers, their parse children) inherits it, which names them even once their parent has gone."""


def leave_ctrl_c_to_the_launcher() -> None:
    """In a DirectRunner worker process: leave the terminal's process group. A terminal's Ctrl-C
    reaches every process of its foreground group; the launching process then ends the workers
    itself (:func:`stop_local_workers`), so they need not each print a ``KeyboardInterrupt``
    traceback first. Only where the launcher said so (:data:`LOCAL_WORKERS_ENV`): a Dataflow
    worker is left alone."""
    if os.environ.get(LOCAL_WORKERS_ENV):
        with contextlib.suppress(OSError):  # a session leader cannot; then Ctrl-C reaches it
            os.setpgid(0, 0)


INTERRUPTED_WORKER = re.compile(r"Worker subprocess exited with return code -2$")
"""How the DirectRunner's watcher threads report a worker that Ctrl-C ended (-2: SIGINT): the shell
that starts each worker is still in the terminal's process group."""


@contextlib.contextmanager
def ctrl_c_quiet_threads() -> Iterator[None]:
    """While a job runs here: a runner thread that reports a worker ended by Ctrl-C says nothing
    (the launcher says it, once, in its own words); any other thread's error is shown as before.
    And Ctrl-C silences the log first, then interrupts: the runner's clean-up, which runs while the
    ``KeyboardInterrupt`` unwinds, stops the workers, whose complaints it would otherwise relay.
    Where the job runs in this process (``in_memory``) Ctrl-C interrupts a DoFn, and Beam wraps the
    ``KeyboardInterrupt`` in a ``RuntimeError`` naming the step; after a Ctrl-C it is a
    ``KeyboardInterrupt`` again."""
    previous_hook = threading.excepthook
    pressed: list[bool] = []

    def hook(args) -> None:
        if not INTERRUPTED_WORKER.search(str(args.exc_value)):
            previous_hook(args)

    def on_ctrl_c(signum, frame) -> None:
        pressed.append(True)
        logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    threading.excepthook = hook
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    try:
        yield
    except Exception:
        if pressed:
            raise KeyboardInterrupt from None
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler or signal.default_int_handler)
        if threading.excepthook is hook:
            threading.excepthook = previous_hook


def processes_of(launcher: int) -> list[int]:
    """The processes a launcher's job started on this machine, by :data:`LOCAL_WORKERS_ENV`
    (Linux ``/proc``; elsewhere none)."""
    marker = f"{LOCAL_WORKERS_ENV}={launcher}".encode()
    found = []
    for environ in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(environ, "rb") as f:
                marked = marker in f.read().split(b"\0")
        except OSError:
            continue  # ended meanwhile, or not ours to read
        pid = int(environ.split("/")[2])
        if marked and pid != launcher:
            found.append(pid)
    return found


def stop_local_workers() -> list[int]:
    """Kill (SIGKILL: silently) every process this launcher's DirectRunner job started here, the
    workers and their parse children, so that an interrupted job leaves none behind and none
    complains that its runner went away. Returns their process ids."""
    stopped = []
    for pid in processes_of(os.getpid()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            stopped.append(pid)
    return stopped
