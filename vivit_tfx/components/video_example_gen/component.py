"""VideoExampleGen component: point the pipeline at a raw video folder (any layout)."""
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec

from vivit_tfx.components.video_example_gen import executor


class VideoExampleGen(FileBasedExampleGen):
  """Reads videos with Beam into clip tf.Examples (same records and splits as `vivit-tfx
  ingest`).

  `custom_config={'clip': ClipConfig dict, 'dataset': DatasetConfig dict, 'splits':
  SplitConfig dict}`; the output_config names the splits (train, eval, test); its hash buckets
  are not used: splits are assigned after decoding, group-safe and stratified.
  """
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
