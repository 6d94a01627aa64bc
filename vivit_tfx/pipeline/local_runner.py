"""The main job: synthetic data if absent → ingest → the whole pipeline on LocalDagRunner
(sqlite ML Metadata) → a summary read back from ML Metadata and TFMA."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Optional

from vivit_tfx.pipeline import configs



from vivit_tfx.audit import metadata, tfma_results


@dataclasses.dataclass
class RunSummary:
  run_id: str
  seconds: float
  executions: Dict[str, str]  # node id → state
  test_metrics: Dict[str, float]
  blessed: Optional[bool]
  pushed_model: Optional[str]
  metadata_path: str
  pipeline_root: str
  report: Optional[str] = None

  def to_text(self) -> str:
    metrics = ', '.join(f'{k}={v:.4f}' for k, v in sorted(self.test_metrics.items())
                        if not k.endswith('_diff') or k == 'binary_accuracy_diff')
    lines = [f'run {self.run_id}: {len(self.executions)} executions in {self.seconds:.0f} s',
             '  ' + ', '.join(f'{k}: {v}' for k, v in self.executions.items()),
             f'  test split: {metrics or "(no evaluation)"}',
             f'  blessed: {self.blessed}',
             f'  pushed model: {self.pushed_model or "(none: not blessed)"}',
             f'  metadata: {self.metadata_path}',
             f'  pipeline root: {self.pipeline_root}',
             f'  report: {self.report or "(not written)"}']
    return '\n'.join(lines)


def prepare_data(config: configs.PipelineConfig, progress: bool = True) -> None:
  """Writes the synthetic videos if the videos folder is absent, then ingests if needed."""
  from vivit_tfx.components import ingest, synthetic  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(config.videos_dir):
    print(f'[run] {config.videos_dir} absent: writing {config.synthetic_clips} synthetic videos')
    synthetic.generate(config.videos_dir,
                       synthetic.SyntheticConfig(num_clips=config.synthetic_clips),
                       progress=progress)
  if config.input_mode != 'tfrecords':
    return
  summary_path = os.path.join(config.clips_dir, ingest.SUMMARY)
  if os.path.exists(summary_path) and _clip_shape_matches(config):
    print(f'[run] using ingested clips in {config.clips_dir}')
    return
  result = ingest.ingest(config.videos_dir, config.clips_dir,
                         clip=config.clip_config(), dataset=config.dataset_config(),
                         progress=progress)
  print(result.to_text())
  if result.num_written == 0:
    raise ValueError(f'no usable video under {config.videos_dir}')


def _clip_shape_matches(config: configs.PipelineConfig) -> bool:
  """True if the ingested clips were made with this config's T and frame size."""
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.components import clip_example  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models import features  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(config.clips_dir, 'train', '*.tfrecord')))
  if not files:
    return False
  record = next(iter(tf.data.TFRecordDataset(files[:1]).take(1)), None)
  if record is None:
    return False
  example = tf.train.Example.FromString(record.numpy())
  frames = clip_example.decode_frames(example)
  stored = len(example.features.feature[features.FRAMES].bytes_list.value)
  return stored == config.clip_config().stored_frames and frames.shape[1:3] == tuple(
      config.frame_size)


def run_pipeline(config: configs.PipelineConfig) -> str:
  """Runs the pipeline with LocalDagRunner; returns the run id."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
  tfx_pipeline = create_pipeline(
      config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.abspath(config.metadata_path)))
  tfx.orchestration.LocalDagRunner().run(tfx_pipeline)
  return metadata.runs(metadata.open_sqlite(config.metadata_path),
                       config.pipeline_name)[-1].name


def summarize(config: configs.PipelineConfig, run_id: Optional[str] = None,
              seconds: float = 0.0) -> RunSummary:
  """Reads a run's outcome back from ML Metadata: states, test metrics, blessing, push."""
  store = metadata.open_sqlite(config.metadata_path)
  runs = metadata.runs(store, config.pipeline_name)
  run = next((r for r in runs if r.name == run_id), runs[-1]) if runs else None
  if run is None:
    raise ValueError(f'no run of {config.pipeline_name} in {config.metadata_path}')
  infos = metadata.executions_of_run(store, run)
  states, test_metrics, blessed, pushed = {}, {}, None, None
  for info in infos:
    states[metadata.node_id(store, info.execution) or info.type_name] = info.state
    for artifact in info.outputs.get('evaluation', []):
      test_metrics = tfma_results.overall_metrics(artifact.uri)
    for artifact in info.outputs.get('blessing', []):
      blessed = bool(metadata.property_value(artifact, 'blessed'))
    for artifact in info.outputs.get('pushed_model', []):
      if metadata.property_value(artifact, 'pushed'):
        pushed = metadata.property_value(artifact, 'pushed_destination')
  return RunSummary(run.name, seconds, states, test_metrics, blessed, pushed,
                    os.path.abspath(config.metadata_path), config.pipeline_root)


def run(config: configs.PipelineConfig, progress: bool = True) -> RunSummary:
  start = time.time()
  prepare_data(config, progress)
  run_id = run_pipeline(config)
  summary = summarize(config, run_id, time.time() - start)
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  summary.report = os.path.abspath(report.build(config, run_id))
  return summary
