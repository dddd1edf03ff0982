"""DirectRunner tuning: local defaults, size-balanced file groups per worker, gc.freeze in worker
processes."""

from __future__ import annotations

import gc
import os
import sys
from types import SimpleNamespace

import apache_beam as beam
import pytest
from apache_beam.io import fileio

from preprocessing import direct_runner, files, options, parse_files, pipeline


def test_only_a_beam_worker_process_freezes_its_objects(monkeypatch):
    assert not direct_runner.in_beam_worker_process()  # pytest's own process: never frozen
    monkeypatch.setattr(
        sys.modules["__main__"], "__spec__", SimpleNamespace(name=direct_runner.BEAM_WORKER_MAIN)
    )
    assert direct_runner.in_beam_worker_process()

    monkeypatch.setattr(direct_runner, "_frozen", False)
    before = gc.get_freeze_count()
    first, second = parse_files.ParseMidi("all", "/", 60), parse_files.ParseMidi("all", "/", 60)
    try:
        first.setup()
        frozen = gc.get_freeze_count()
        made_later = [[index] for index in range(5_000)]  # noqa: F841 - alive, tracked, not frozen
        second.setup()  # a second DoFn instance in the same worker: no-op
        assert gc.get_freeze_count() < frozen + 5_000
    finally:
        gc.unfreeze()
        first.teardown()
        second.teardown()
    assert frozen > before + 10_000  # the imported modules' objects, at least


def test_balance_by_size_is_longest_first_to_the_lightest_bucket():
    sizes = [5, 1, 9, 3, 7, 2, 8]
    assignment = direct_runner.balance_by_size(sizes, 2)
    loads = [sum(s for s, b in zip(sizes, assignment) if b == bucket) for bucket in (0, 1)]
    # 9→0, 8→1, 7→1, 5→0, 3→0, 2→1, 1→0: loads 18 and 17, where alternating in list order gives 29
    # and 6
    assert assignment == [0, 0, 0, 0, 1, 1, 1]
    assert sorted(loads) == [17, 18]
    assert direct_runner.balance_by_size(sizes, 1) == [0] * len(sizes)
    assert direct_runner.balance_by_size([], 3) == []
    # more buckets than files
    assert sorted(direct_runner.balance_by_size([4, 4, 4], 5)) == [0, 1, 2]
    with pytest.raises(ValueError):
        direct_runner.balance_by_size(sizes, 0)


def test_a_workers_group_comes_out_largest_first():
    from apache_beam.io.filesystem import FileMetadata

    group = [FileMetadata(f"/in/{name}.mid", size) for name, size in (("a", 5), ("b", 9), ("c", 5))]
    ordered = direct_runner.largest_first((0, group))
    assert [m.path for m in ordered] == ["/in/b.mid", "/in/a.mid", "/in/c.mid"]


def test_the_direct_runner_groups_files_per_worker_and_other_runners_reshuffle(midi_corpus):
    from apache_beam.options.pipeline_options import PipelineOptions

    def workers(*flags):
        return direct_runner.direct_runner_workers(PipelineOptions(list(flags)))

    assert (
        workers(
            "--runner=DirectRunner",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=3",
        )
        == 3
    )
    assert workers("--runner=DirectRunner", "--direct_running_mode=in_memory") == 1
    assert workers("--runner=DataflowRunner") is None

    def processes(*flags):
        return direct_runner.parse_processes(PipelineOptions(list(flags)))

    cores = os.cpu_count() or 1
    # in memory: one process parses, with a child per core; worker processes share the cores
    assert processes("--runner=DirectRunner", "--direct_running_mode=in_memory") == cores
    many = ("--direct_running_mode=multi_processing", f"--direct_num_workers={2 * cores}")
    assert processes("--runner=DirectRunner", *many) == 1
    assert processes("--runner=DataflowRunner") == 1

    def leaf_names(local_workers):
        p = beam.Pipeline()
        args, _ = options.parse_args(
            ["--input", str(midi_corpus["dir"]), "--output", "/tmp/unused"]
        )
        _ = p | "PreprocessMidi" >> pipeline.PreprocessMidi(
            args,
            pattern=str(midi_corpus["dir"]) + "/**",
            root=str(midi_corpus["dir"]) + "/",
            train_shards=1,
            local_workers=local_workers,
        )
        return {t.unique_name for t in p.to_runner_api().components.transforms.values()}

    assert "PreprocessMidi/SpreadFiles/GroupPerWorker" in leaf_names(2)
    assert not any(
        name.startswith("PreprocessMidi/SpreadFiles/Reshuffle") for name in leaf_names(2)
    )
    assert "PreprocessMidi/SpreadFiles/Reshuffle" in leaf_names(None)


@pytest.mark.slow
def test_each_direct_runner_worker_parses_one_size_balanced_share(midi_corpus):
    """SpreadFiles relies on the DirectRunner giving each worker one group: check it on real
    workers."""
    from apache_beam.testing.util import assert_that

    pattern = str(midi_corpus["dir"]) + "/**"
    sizes = {m.path: m.size_in_bytes for m in files.match_inputs(pattern)}

    def check(pid_paths):
        by_worker: dict[int, list[str]] = {}
        for pid, path in pid_paths:
            by_worker.setdefault(pid, []).append(path)
        assert sorted(path for _, path in pid_paths) == sorted(sizes)  # every file once
        assert len(by_worker) == 2  # both worker processes parsed
        loads = sorted(sum(sizes[path] for path in paths) for paths in by_worker.values())
        assert loads[1] - loads[0] <= max(sizes.values())  # LPT: within one file of each other

    options = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with beam.Pipeline(argv=options) as p:
        parsed_where = (
            p
            | fileio.MatchFiles(pattern)
            | beam.Filter(lambda m: files.is_midi_path(m.path))
            | direct_runner.SpreadFiles(local_workers=2)
            | beam.Map(lambda m: (os.getpid(), m.path))
        )
        assert_that(parsed_where, check)
