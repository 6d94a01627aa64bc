"""Pipeline step after ExampleValidator: stops the run on data anomalies.

ExampleValidator only records anomalies; this gate fails (with the anomalies listed) when any
split has one, and otherwise passes the schema on as the *validated* schema that Transform and
Trainer consume — so nothing downstream can run on data that violates the schema.
"""
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import (InputArtifact, OutputArtifact,
                                                       Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts


class DataAnomaliesError(RuntimeError):
  """The examples violate the schema."""


def describe_anomalies(anomalies: types.Artifact) -> list:
  """One line per anomaly: '<split>: <feature>: <description>'."""
  lines = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), 'SchemaDiff.pb')
    if not tf.io.gfile.exists(path):
      continue
    with tf.io.gfile.GFile(path, 'rb') as f:
      result = anomalies_pb2.Anomalies.FromString(f.read())
    for feature, info in sorted(result.anomaly_info.items()):
      lines.append(f'{split}: {feature}: {info.short_description} ({info.description})')
    if result.HasField('dataset_anomaly_info'):
      lines.append(f'{split}: dataset: {result.dataset_anomaly_info.description}')
  return lines


@component
def ValidationGate(  # pylint: disable=invalid-name
    schema: InputArtifact[standard_artifacts.Schema],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    validated_schema: OutputArtifact[standard_artifacts.Schema],
    code: Parameter[str] = ''):
  """Raises DataAnomaliesError if ExampleValidator found anomalies; else passes the schema on.

  `code`: the hash of this module's code, so an edit re-executes the gate (cache key only).
  """
  del statistics  # an input for lineage: the validated schema derives from these statistics
  del code
  problems = describe_anomalies(anomalies)
  if problems:
    raise DataAnomaliesError('data anomalies, the run stops before Transform/Trainer:\n  ' +
                             '\n  '.join(problems))
  for name in tf.io.gfile.listdir(schema.uri):
    tf.io.gfile.copy(os.path.join(schema.uri, name), os.path.join(validated_schema.uri, name),
                     overwrite=True)
