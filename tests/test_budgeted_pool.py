"""preprocessing.budgeted_pool: several budgeted children fed from one queue, and the parse step
that uses it (every file parsed once, bad files dead-lettered, by whichever child is free).

The children run functions of ``test_budgeted_child`` (importable by name: pytest puts this folder
on ``sys.path``), plus :func:`rendezvous` here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io import fileio
from apache_beam.testing.util import assert_that
from helpers import wait_until_gone

from preprocessing import budgeted_child, files, parse_files
from preprocessing.budgeted_pool import BudgetedPool
from preprocessing.encodings import registry

GENEROUS = 60.0


def rendezvous(folder: str, expected: int) -> str:
    """Check in, then wait until ``expected`` children have checked in: only children that run at
    the same time can all meet ("alone" after a generous wait means the calls ran one by one)."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + GENEROUS
    while len(os.listdir(folder)) < expected:
        if time.monotonic() > deadline:
            return "alone"
        time.sleep(0.01)
    return "met"


def call(*args):
    """Pool work: call the thread's child with ``args``."""
    return lambda child: child(*args)


def test_every_piece_of_work_comes_back_once_with_its_key(tmp_path):
    with_pool = BudgetedPool("test_budgeted_child:echo", GENEROUS, processes=2)
    try:
        for index in range(20):
            with_pool.submit(index, call(index, "x"))
        done = list(with_pool.results())
    finally:
        with_pool.stop()
    assert sorted(key for key, _, _ in done) == list(range(20))
    assert all(result == (key, "x") and exc is None for key, result, exc in done)
    assert with_pool.in_flight == 0


def test_the_children_work_at_the_same_time(tmp_path):
    pool = BudgetedPool(f"{__name__}:rendezvous", GENEROUS, processes=3)
    try:
        for key in range(3):
            pool.submit(key, call(str(tmp_path), 3))
        assert sorted(result for _, result, _ in pool.results()) == ["met"] * 3
        assert len(set(pool.pids)) == 3
    finally:
        pool.stop()


def test_a_failing_call_comes_back_with_its_error_and_the_others_are_untouched():
    pool = BudgetedPool("test_budgeted_child:burn", 0.5, processes=2)
    try:
        pool.start()
        first_pids = set(pool.pids)
        pool.submit("heavy", call(30.0))  # over its 0.5 s of CPU: killed, its child replaced
        for key in range(4):
            pool.submit(key, call(0.01))
        done = {key: (result, exc) for key, result, exc in pool.results()}
        assert isinstance(done["heavy"][1], budgeted_child.OverBudget)
        assert all(done[key][1] is None and done[key][0] > 0 for key in range(4))
        assert len(first_pids - set(pool.pids)) == 1  # only the killed child was replaced
    finally:
        pool.stop()


def test_results_waits_only_for_what_it_must(tmp_path):
    pool = BudgetedPool("test_budgeted_child:sleep_for", GENEROUS, processes=1)
    try:
        pool.submit("slow", call(GENEROUS / 4))
        # one in flight may stay in flight: nothing has finished, so nothing comes back, at once
        assert list(pool.results(keep_in_flight=1)) == []
        assert pool.in_flight == 1
    finally:
        pool.stop()


def test_stop_leaves_no_child_even_mid_call():
    pool = BudgetedPool("test_budgeted_child:sleep_for", GENEROUS, processes=2)
    pool.start()
    pool.submit("a", call(GENEROUS))
    pool.submit("b", call(GENEROUS))
    pids = pool.pids
    pool.stop()
    assert all(wait_until_gone(pid, GENEROUS) for pid in pids)
    with pytest.raises(ValueError):
        BudgetedPool("test_budgeted_child:echo", 1.0, processes=0)


@pytest.mark.parametrize("processes", [1, 3])
def test_the_parse_step_gives_every_piece_and_dead_letter_one_child_or_a_pool(
    midi_corpus, processes
):
    """ParseMidi over the corpus on the in-memory DirectRunner: one child, or a pool of three."""
    from apache_beam.testing.util import equal_to

    pattern, root = files.input_pattern(str(midi_corpus["dir"]))
    with beam.Pipeline(argv=["--direct_running_mode=in_memory"]) as p:
        parsed = (
            p
            | fileio.MatchFiles(pattern)
            | beam.Filter(lambda m: files.is_midi_path(m.path))
            | fileio.ReadMatches()
            | beam.ParDo(
                parse_files.ParseMidi("all", root, GENEROUS, registry.DEFAULT, processes=processes)
            ).with_outputs(parse_files.ParseMidi.DEAD_LETTER, main="pieces")
        )
        assert_that(
            parsed.pieces | "Pieces" >> beam.Map(lambda piece: (piece.key, piece.tokens)),
            equal_to(list(midi_corpus["tokens"].items())),
            label="CheckPieces",
        )
        assert_that(
            parsed[parse_files.ParseMidi.DEAD_LETTER]
            | "Names" >> beam.Map(lambda dead: Path(dead["path"]).name),
            equal_to(midi_corpus["bad"]),
            label="CheckDead",
        )
