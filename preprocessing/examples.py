"""The bytes of one record: a ``tf.train.Example`` of token ids, written with plain protobuf.

Two layouts (:data:`preprocessing.records.LAYOUTS`), told apart by the manifest:

* ``spans`` (format 3, what the pipeline writes): one feature, ``tokens``, a stretch of up to
  ``sequence_length + stride`` token ids of one piece; a piece's spans start ``stride`` tokens
  apart, so every window of ``sequence_length + 1`` tokens lies in exactly one span
  (:func:`preprocessing.windowing.spans`), and each token is stored about
  ``(sequence_length + stride) / stride`` times instead of ``sequence_length + 1`` times.
* ``windows`` (format 2, written before spans; still read): ``inputs`` (``sequence_length`` ids) and
  ``target`` (the id that follows), one record per window.

The writer needs protobuf only (:func:`_example_class` declares the three messages of
TensorFlow's ``example.proto`` / ``feature.proto`` that the records use, same names and field
numbers), so the Beam pipeline and its workers never import TensorFlow (a 3-7 s import per worker
process, and 600 MB that Dataflow workers would install); the parse specs import it, on the
reader's side only.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

TOKENS_FEATURE = "tokens"
INPUTS_FEATURE = "inputs"
TARGET_FEATURE = "target"


@functools.lru_cache(maxsize=1)
def _example_class():
    """The ``tf.train.Example`` message, declared for plain protobuf (only its int64 branch).

    Same field names and numbers as tensorflow/core/example/{example,feature}.proto, so the bytes
    are a valid ``tf.train.Example`` (tests parse them with ``tf.io.parse_example`` and
    ``tf.train.Example.FromString``) while the writer needs protobuf only, not TensorFlow.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    package = "lstm_composer.tf_example"
    proto = descriptor_pb2.FileDescriptorProto(
        name="lstm_composer/tf_example.proto", package=package, syntax="proto3"
    )

    def message_field(owner, name: str, number: int, message: str, repeated: bool = False) -> None:
        label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
        owner.field.add(
            name=name,
            number=number,
            type=field.TYPE_MESSAGE,
            label=label,
            type_name=f".{package}.{message}",
        )

    int64_list = proto.message_type.add(name="Int64List")
    int64_list.field.add(name="value", number=1, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    message_field(feature, "int64_list", 3, "Int64List")
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message_field(entry, "value", 2, "Feature")
    message_field(features, "feature", 1, "Features.FeatureEntry", repeated=True)
    example = proto.message_type.add(name="Example")
    message_field(example, "features", 1, "Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.Example"))


def encode_span(tokens: Sequence[int]) -> bytes:
    """Serialise one span of token ids (the ``spans`` layout) as a ``tf.train.Example``."""
    example = _example_class()()
    example.features.feature[TOKENS_FEATURE].int64_list.value.extend(int(i) for i in tokens)
    return example.SerializeToString(deterministic=True)


def decode_span(serialized: bytes) -> list[int]:
    """Inverse of :func:`encode_span`, in plain Python (for tests and tools, not for tf.data)."""
    example = _example_class().FromString(serialized)
    return list(example.features.feature[TOKENS_FEATURE].int64_list.value)


def span_spec() -> dict[str, Any]:
    """The feature spec of a span for ``tf.io.parse_example``: a ragged row of int64 ids."""
    import tensorflow as tf

    return {TOKENS_FEATURE: tf.io.RaggedFeature(tf.int64)}


def encode_example(inputs: Sequence[int], target: int) -> bytes:
    """Serialise one window of the ``windows`` layout (format 2) as a ``tf.train.Example``.

    ``inputs`` holds ``sequence_length`` token ids, ``target`` the id of the token that follows.
    Kept for what reads and tests that layout; the pipeline writes spans.
    """
    example = _example_class()()
    example.features.feature[INPUTS_FEATURE].int64_list.value.extend(int(i) for i in inputs)
    example.features.feature[TARGET_FEATURE].int64_list.value.append(int(target))
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: bytes) -> tuple[list[int], int]:
    """Inverse of :func:`encode_example`, in plain Python (for tests and tools, not for tf.data)."""
    example = _example_class().FromString(serialized)
    feats = example.features.feature
    return list(feats[INPUTS_FEATURE].int64_list.value), int(
        feats[TARGET_FEATURE].int64_list.value[0]
    )


def parse_spec(sequence_length: int) -> dict[str, Any]:
    """The feature spec of the ``windows`` layout for ``tf.io.parse_example``: fixed-length int64
    inputs and a scalar target."""
    import tensorflow as tf

    return {
        INPUTS_FEATURE: tf.io.FixedLenFeature([sequence_length], tf.int64),
        TARGET_FEATURE: tf.io.FixedLenFeature([], tf.int64),
    }
