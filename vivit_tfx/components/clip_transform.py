"""Transform for decoded video clips: TFX's Transform with a bounded record-batch size.

TFT grows its batch size dynamically (up to 1000 records); a decoded 8×64×64×3 float32 clip is
393 KB, so batches — and Transform's memory — would grow with the dataset (cf. tensorflow/tfx
#5777). Fixed batches keep the analyze pass's memory flat.
"""
from typing import Optional

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.transform import component, executor
from tfx.dsl.components.base import executor_spec

# Records per batch fed to preprocessing_fn (shared with `vivit-tfx bench pipeline`).
CLIPS_PER_BATCH = 32


class BoundedBatchExecutor(executor.Executor):
  """Transform's executor, reading `CLIPS_PER_BATCH` records per batch."""

  def _GetDesiredBatchSize(self, data_format: int,  # pylint: disable=invalid-name
                           schema: schema_pb2.Schema) -> Optional[int]:
    return super()._GetDesiredBatchSize(data_format, schema) or CLIPS_PER_BATCH


class ClipTransform(component.Transform):
  """`tfx.components.Transform` with `BoundedBatchExecutor`; same inputs and outputs."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BoundedBatchExecutor)
