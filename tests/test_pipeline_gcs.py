"""The pipeline with --input and --output on gs://, against a local GCS emulator started by the
test."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter

import pytest
import tensorflow as tf
from gcs_emulator import gcs_emulator

from preprocessing import pipeline, records

BUCKET = "lstm-composer-test"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    from google.cloud import storage

    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as url:
        client = storage.Client(project="local-test-project")
        client.create_bucket(BUCKET)
        yield client, url


@pytest.mark.slow
def test_pipeline_reads_and_writes_gcs(gcs, midi_corpus, tmp_path):
    client, _ = gcs
    bucket = client.bucket(BUCKET)
    src = midi_corpus["dir"]
    for path in sorted(src.iterdir()):
        bucket.blob(f"midi/{path.name}").upload_from_filename(str(path))

    outcome = pipeline.run(
        [
            "--input",
            f"gs://{BUCKET}/midi",
            "--output",
            f"gs://{BUCKET}/records",
            "--sequence-length",
            "8",
            "--validation-fraction",
            "0.3",
            "--num-shards",
            "2",
            "--compression",
            "gzip",
        ]
    )
    manifest = outcome.manifest

    # The same music as on the local disk: same counts, the same split (keys are relative paths).
    names = {blob.name for blob in client.list_blobs(BUCKET, prefix="records/")}
    expected = {f"records/{n}" for n in ("vocab.json", "manifest.json", "dead_letter.jsonl")}
    expected |= {f"records/{n}" for n in manifest.shards("train") + manifest.shards("validation")}
    assert names == expected  # no temporary shard left behind by finalize
    assert manifest.counts["files_matched"] == len(midi_corpus["tokens"]) + len(midi_corpus["bad"])
    assert manifest.counts["files_failed"] == len(midi_corpus["bad"])
    assert manifest.counts["train_windows"] > 0 and manifest.counts["validation_windows"] > 0

    vocab = json.loads(bucket.blob("records/vocab.json").download_as_bytes())
    assert vocab == sorted({t for toks in midi_corpus["tokens"].values() for t in toks})
    dead = bucket.blob("records/dead_letter.jsonl").download_as_text().splitlines()
    assert sorted(json.loads(line)["path"] for line in dead) == sorted(
        f"gs://{BUCKET}/midi/{name}" for name in midi_corpus["bad"]
    )

    # TensorFlow's gs:// reader ignores the emulator: download the shards and read them with
    # tf.data.
    total = Counter()
    for split in records.SPLITS:
        for shard in manifest.shard_entries(split):
            local = tmp_path / shard.name
            blob = bucket.get_blob(f"records/{shard.name}")
            blob.download_to_filename(str(local))
            data = local.read_bytes()
            # the manifest's entry
            assert (shard.size, shard.sha256) == (blob.size, hashlib.sha256(data).hexdigest())
            # GCS holds what was written
            assert base64.b64decode(blob.md5_hash) == hashlib.md5(data).digest()
            read = sum(1 for _ in tf.data.TFRecordDataset(str(local), compression_type="GZIP"))
            assert read == shard.records
            total[split] += read
    assert total["train"] == manifest.counts["train_spans"] < manifest.counts["train_windows"]
    assert total["validation"] == manifest.counts["validation_spans"]

    # A rerun into the same folder: a stale beam-temp-* folder goes, the old shards go once the new
    # manifest has landed, and nothing temporary stays.
    bucket.blob("records/beam-temp-train-0123/part-0").upload_from_string(
        b"left by an interrupted run"
    )
    again = pipeline.run(
        [
            "--input",
            f"gs://{BUCKET}/midi",
            "--output",
            f"gs://{BUCKET}/records",
            "--sequence-length",
            "8",
            "--validation-fraction",
            "0.3",
            "--num-shards",
            "3",
        ]
    ).manifest
    names = {blob.name for blob in client.list_blobs(BUCKET, prefix="records/")}
    expected = {f"records/{n}" for n in ("vocab.json", "manifest.json", "dead_letter.jsonl")}
    assert names == expected | {
        f"records/{n}" for n in again.shards("train") + again.shards("validation")
    }
    assert len(again.train_shards) == 3 and again.run_id != manifest.run_id
    assert (
        records.manifest_from_json(bucket.blob("records/manifest.json").download_as_bytes())
        == again
    )


def test_missing_gcs_input_is_one_clear_message(gcs, tmp_path, capsys):
    code = pipeline.main(
        ["--input", f"gs://{BUCKET}/nothing-here", "--output", f"gs://{BUCKET}/out"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no MIDI files" in err and f"gs://{BUCKET}/nothing-here/**" in err
