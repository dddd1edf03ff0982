"""preprocessing.budgeted_child: a pure function in a child process, each call under a time budget.

The functions the children run are defined here, at module level, so that a child can import them by
name (pytest puts this folder on ``sys.path``, and the child inherits the parent's path). This
module imports nothing heavy, so each child starts in a fraction of a second.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import is_gone, wait_until_gone

from preprocessing import budgeted_child

GENEROUS = 60.0  # seconds: a bound that only a stuck call or a lost kill can reach


def echo(*args):
    return args


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def spin(seconds: float) -> int:
    """Pure Python, never sleeping: what a parser looping on a huge silence does."""
    end, count = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        count += 1
    return count


def burn(cpu_seconds: float) -> int:
    """Work until this process has used ``cpu_seconds`` more CPU time, however long that takes."""
    end, count = time.process_time() + cpu_seconds, 0
    while time.process_time() < end:
        count += 1
    return count


def backtrack(length: int) -> bool:
    """Catastrophic backtracking in ``re``: C code that holds the GIL for minutes, like a stuck C++
    parser. Nothing running in the caller's process (a signal handler, an exception injected into a
    thread) could interrupt it; a child process can still be killed."""
    return re.match(r"(a+)+$", "a" * length + "b") is not None


def fail(message: str):
    raise ValueError(message)


class Unpicklable(Exception):
    def __init__(self, first, second):  # pickle cannot rebuild it from args
        super().__init__(f"{first} and {second}")


def fail_unpicklably():
    raise Unpicklable("this", "that")


def return_unpicklable():
    return lambda: None


def chatter(value):
    print("a function that prints must not corrupt the reply")
    sys.stdout.flush()
    return value


def crash(how: str):
    if how == "segfault":
        import ctypes

        ctypes.string_at(0)  # a C crash, as a native parser can have
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer does
    os._exit(3)


@pytest.fixture
def budgeted(request):
    made = []

    def make(function, seconds=5.0, wall_seconds=None):
        made.append(budgeted_child.BudgetedFunction(function, seconds, wall_seconds=wall_seconds))
        return made[-1]

    yield make
    for instance in made:
        instance.stop()


def test_results_come_back_unchanged_from_one_long_lived_child(budgeted):
    call = budgeted(echo)
    value = (b"MThd\x00\x00\x00\x06" * 1000, ["E-4", "4.7.11"] * 500, {"parts": "all"}, 1.5, None)
    assert call(*value) == value
    pid = call.pid
    assert [call(index) for index in range(20)] == [(index,) for index in range(20)]
    assert call.pid == pid  # no child per call
    assert budgeted(chatter)("quiet") == "quiet"


def test_a_sleeping_call_is_stopped_by_the_clocks_backstop_and_the_next_runs_in_a_fresh_child(
    budgeted,
):
    """Sleeping uses no CPU: the budget of CPU time never runs out, the wall-clock backstop does."""
    call = budgeted(sleep_for, seconds=0.5, wall_seconds=2.0)
    assert call(0) == "woke up"
    first = call.pid
    started = time.monotonic()
    with pytest.raises(budgeted_child.OverBudget, match="took more than 2 s by the clock") as over:
        call(GENEROUS * 10)
    assert over.value.limit == budgeted_child.WALL
    assert time.monotonic() - started < GENEROUS
    assert wait_until_gone(first)
    assert call(0) == "woke up" and call.pid != first


def test_the_budget_counts_cpu_time_not_the_clock(budgeted):
    """A call that needs 0.3 s of CPU keeps its 1 s budget however long the machine keeps it from
    running (here: stopped outright for two seconds), so a busy machine parses the same files."""
    call = budgeted(burn, seconds=1.0, wall_seconds=GENEROUS)
    assert call(0.0) == 0
    child = call.pid

    def starve() -> None:
        time.sleep(0.1)
        os.kill(child, signal.SIGSTOP)
        time.sleep(2.0)
        os.kill(child, signal.SIGCONT)

    starver = threading.Thread(target=starve)
    starver.start()
    assert call(0.3) > 0  # 2.3 s by the clock, 0.3 s of CPU: within the budget
    starver.join()
    assert call.pid == child
    assert budgeted_child.cpu_seconds(child) >= 0.3
    assert budgeted_child.WALL_FACTOR * 60 == budgeted_child.BudgetedFunction(echo, 60).wall_seconds
    assert (
        budgeted_child.BudgetedFunction(echo, 1).wall_seconds
        == 1 + budgeted_child.WALL_EXTRA_SECONDS
    )


@pytest.mark.parametrize(
    "function, quick, stuck, quick_result",
    [
        (spin, 0.0, GENEROUS * 10, 0),
        (backtrack, 5, 40, False),  # 2**40 steps
    ],
    ids=["python", "c_code"],
)
def test_a_busy_call_is_stopped_in_python_and_in_c_code(
    budgeted, function, quick, stuck, quick_result
):
    call = budgeted(function, seconds=0.5)
    assert call(quick) == quick_result
    started = time.monotonic()
    with pytest.raises(budgeted_child.OverBudget, match="took more than 0.5 s of CPU time") as over:
        call(stuck)
    assert over.value.limit == budgeted_child.CPU
    assert time.monotonic() - started < GENEROUS
    assert call(quick) == quick_result


@pytest.mark.parametrize(
    "how, reason",
    [
        ("segfault", "killed by SIGSEGV"),
        ("killed", "killed by SIGKILL (out of memory?)"),
        ("exit", "exited with status 3"),
    ],
)
def test_a_child_that_dies_is_reported_and_replaced(budgeted, how, reason):
    call = budgeted(crash)
    with pytest.raises(budgeted_child.ChildDied, match=re.escape(reason)):
        call(how)
    with pytest.raises(budgeted_child.ChildDied):
        call(how)  # a fresh child, which dies the same way
    assert budgeted_child.death_reason(None) == "stopped answering"


def test_what_the_function_raises_comes_back_as_type_and_message(budgeted):
    with pytest.raises(budgeted_child.CallFailed) as caught:
        budgeted(fail)("music21 could not parse it")
    assert (caught.value.type_name, caught.value.message) == (
        "ValueError",
        "music21 could not parse it",
    )
    with pytest.raises(budgeted_child.CallFailed, match="Unpicklable: this and that"):
        budgeted(fail_unpicklably)()
    call = budgeted(return_unpicklable)
    with pytest.raises(budgeted_child.CallFailed, match="cannot be sent back"):
        call()
    with pytest.raises(budgeted_child.CallFailed):
        call()  # the child survives its function's errors


def test_a_child_that_cannot_start_fails_loudly_not_per_input(budgeted):
    with pytest.raises(budgeted_child.StartFailed, match="exited with status 1"):
        budgeted("no_such_module_anywhere:function")(1)
    with pytest.raises(budgeted_child.StartFailed, match="exited with status 1"):
        budgeted("test_budgeted_child:no_such_function")(1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="positive"):
        budgeted_child.BudgetedFunction(echo, 0)
    with pytest.raises(ValueError, match="cannot be imported by name"):
        budgeted_child.BudgetedFunction(lambda: None, 1)
    assert budgeted_child.function_reference(echo) == "test_budgeted_child:echo"
    assert (
        budgeted_child.resolve("test_budgeted_child:Unpicklable.__init__") is Unpicklable.__init__
    )


def test_stop_kills_the_child_and_start_brings_a_new_one(budgeted):
    call = budgeted(echo)
    call.start()
    first = call.pid
    call.stop()
    call.stop()  # idempotent
    assert call.pid is None and wait_until_gone(first)
    assert call(1) == (1,) and call.pid != first


def test_a_terminals_ctrl_c_reaches_the_parent_only(budgeted):
    """A terminal sends Ctrl-C to its foreground process group. A child still starting (importing
    its module) when it came printed Python's fatal start-up error; in a session of its own the
    child never receives it, and the parent, which got it, ends the child."""
    call = budgeted(echo)
    call.start()
    assert os.getsid(call.pid) == call.pid != os.getsid(0)
    assert os.getpgid(call.pid) != os.getpgid(0)


PARENT = textwrap.dedent("""
    import sys
    sys.path[:0] = sys.argv[1:]
    from preprocessing import budgeted_child
    call = budgeted_child.BudgetedFunction("test_budgeted_child:sleep_for", 600)
    call(0)
    print(call.pid, flush=True)
    call(600)
""")


@pytest.mark.parametrize("death", ["SIGKILL", "SIGTERM", "Ctrl-C"])
def test_the_child_never_outlives_its_parent_even_mid_call(death):
    """The parent dies while its child sleeps through a call. Killed, nobody runs the parent's
    clean-up, and the child must still go (its request pipe closes; a thread in the child notices).
    Ctrl-C signals the foreground process group: the parent, whose child is in a session of its
    own and ends when the parent's pipe closes."""
    here = str(Path(__file__).parent)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, here, *sys.path],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        # a shell starts a background job with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the parent the default a terminal's foreground job has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        child = int(parent.stdout.readline())
        assert not is_gone(child)
        if death == "Ctrl-C":
            os.killpg(parent.pid, signal.SIGINT)
        else:
            parent.send_signal(getattr(signal, death))
        parent.wait(timeout=GENEROUS)
        assert wait_until_gone(child)
    finally:
        parent.kill()
        parent.wait()
