"""VideoExampleGen component: point the pipeline at a raw video folder (RLVS layout)."""
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec

from vivit_tfx.components.video_example_gen import executor


class VideoExampleGen(FileBasedExampleGen):
  """Reads videos with Beam into clip tf.Examples (same records as `vivit-tfx ingest`).

  Pass `custom_config={'clip': {'num_frames': 8, 'frame_size': [64, 64]}}` to set the clip
  shape, and an output_config that hashes on `video_id` so no video lands in two splits.
  """
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
