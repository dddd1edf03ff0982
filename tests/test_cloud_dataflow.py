"""The preprocessing pipeline built as a Dataflow job, offline: input and output on gs:// (the
local GCS emulator), ``--dry_run=True --no_auth``; then Beam's own Dataflow client stages the
job's files to the emulator and fills in the job request's environment, stopping just before the
API call."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from gcs_emulator import gcs_emulator
from test_cloud_docs import VARIABLES, commands_starting

from preprocessing import pipeline
from preprocessing.encodings import reference

BUCKET, PROJECT, REGION = VARIABLES["BUCKET"], VARIABLES["PROJECT"], VARIABLES["REGION"]


def dataflow_argv() -> list[str]:
    """The Dataflow command of docs/CLOUD.md (with its variables), plus the dry-run flags."""
    (command,) = commands_starting("lstm-composer", "preprocess")
    return command[2:] + ["--dry_run=True", "--no_auth"]


@pytest.fixture(scope="module")
def dataflow_job(tmp_path_factory):
    """Build the Dataflow job once (it builds the sdist of setup.py, a few seconds)."""
    import os

    from google.cloud import storage

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as _:
        client = storage.Client(project="local-test-project")
        bucket = client.create_bucket(BUCKET)
        for index in range(2):
            data = reference.midi_bytes_from_tokens(["C4", "E4", "G4", "4.7.11", "A3"][index:] * 8)
            bucket.blob(f"midi/piece_{index}.mid").upload_from_string(data)
        cwd = os.getcwd()
        os.chdir(root)  # --setup_file ./setup.py is relative, as in docs/CLOUD.md's command
        try:
            outcome = pipeline.run(dataflow_argv())
            job = outcome.result.job

            # What DataflowRunner does next, minus the API call: stage every file, fill the
            # environment.
            from apache_beam.runners.dataflow.internal import apiclient

            client_ = apiclient.DataflowApplicationClient(job.options, job.root_staging_location)
            client_.create_job_description(job)
        finally:
            os.chdir(cwd)
        staged = {blob.name: blob for blob in client.list_blobs(BUCKET, prefix="tmp/")}
        workflow = next(
            (
                blob.download_as_bytes()
                for name, blob in staged.items()
                if name.endswith("workflow.tar.gz")
            ),
            None,
        )
        outputs = [blob.name for blob in client.list_blobs(BUCKET, prefix="records/")]
        yield {
            "outcome": outcome,
            "job": job,
            "staged": sorted(staged),
            "workflow": workflow,
            "outputs": outputs,
        }


def test_dry_run_builds_the_job_and_runs_nothing(dataflow_job):
    outcome = dataflow_job["outcome"]
    assert outcome.manifest is None  # nothing ran, so no manifest
    assert not [
        name for name in dataflow_job["outputs"] if not name.endswith(".lstm-composer-write-test")
    ]


def test_job_request_is_a_dataflow_job_with_our_transforms(dataflow_job):
    from google.cloud import dataflow_v1beta3

    job = dataflow_job["job"]
    assert isinstance(job.proto, dataflow_v1beta3.Job)
    assert job.proto.type_ == dataflow_v1beta3.JobType.JOB_TYPE_BATCH
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {
        f"PreprocessMidi/{name}"
        for name in (
            "MatchFiles",
            "ParseMidi",
            "CloseUnderShifts",
            "Spans",
            "TranspositionTable",
            "WriteTrain",
            "WriteValidation",
            "Vocabulary",
            "Tally",
            "WriteOutputs",
        )
    } <= names


def test_runner_v2_and_the_sdk_worker_image(dataflow_job):
    import apache_beam
    from apache_beam.portability.api import beam_runner_api_pb2

    job = dataflow_job["job"]
    environment = job.proto.environment
    experiments = set(environment.experiments)
    assert "use_runner_v2" in experiments and "beam_fn_api" in experiments
    (env,) = job.proto_pipeline.components.environments.values()
    image = beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
    assert image.endswith(f"beam_python3.11_sdk:{apache_beam.__version__}")
    images = [
        c.container_image
        for pool in environment.worker_pools
        for c in pool.sdk_harness_container_images
    ]
    assert images and all(
        i.endswith(f"beam_python3.11_sdk:{apache_beam.__version__}") for i in images
    )


def test_sdk_pipeline_options_carry_the_cloud_flags(dataflow_job):
    environment = dataflow_job["job"].proto.environment
    options = dict(environment.sdk_pipeline_options)["options"]
    assert options["project"] == PROJECT and options["region"] == REGION
    assert options["temp_location"].startswith(f"gs://{BUCKET}/tmp/")  # Beam adds the job name
    assert options["setup_file"] == "./setup.py"
    assert options["runner"] == "DataflowRunner"


def test_setup_file_is_staged_as_an_sdist_with_the_pipeline_code(dataflow_job):
    staged = dataflow_job["staged"]
    assert any(name.endswith("/workflow.tar.gz") for name in staged), staged
    assert any(name.endswith("/pipeline.pb") for name in staged), staged
    packages = [
        p.name for pool in dataflow_job["job"].proto.environment.worker_pools for p in pool.packages
    ]
    assert "workflow.tar.gz" in packages
    # The workers pip-install this sdist: the DoFns' modules are in it, and its requirements bring
    # both encodings' libraries (music21; MidiTok and symusic), numpy and protobuf (the base
    # install), and no TensorFlow.
    with tarfile.open(fileobj=io.BytesIO(dataflow_job["workflow"]), mode="r:gz") as sdist:
        files = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        assert {
            "preprocessing/encodings/reference.py",
            "preprocessing/records.py",
            "preprocessing/windowing.py",
            "preprocessing/pipeline.py",
            "setup.py",
        } <= files
        requires = next(
            sdist.extractfile(m).read().decode()
            for m in sdist.getmembers()
            if m.name.endswith(".egg-info/requires.txt")
        )
    base = requires.split("\n[", 1)[0]
    assert all(dep in base for dep in ("music21", "miditok==3.1.0", "symusic", "numpy", "protobuf"))
    assert "tensorflow" not in base and "apache-beam" not in base


def test_job_request_serialises(dataflow_job):
    """The request is one JSON document (what --dataflow_job_file would hold on a real
    submission)."""
    body = json.loads(dataflow_job["job"].json())
    assert body["name"].startswith("beamapp-")
    assert body["environment"]["workerPools"]
