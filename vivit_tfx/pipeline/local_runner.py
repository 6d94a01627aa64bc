"""The main job: synthetic data if absent → ingest → the whole pipeline on LocalDagRunner
(sqlite ML Metadata) → a summary read back from ML Metadata and TFMA."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional

from vivit_tfx.audit import metadata, tfma_results
from vivit_tfx.pipeline import configs, run_guard


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
  not_blessed_because: List[str] = dataclasses.field(default_factory=list)

  def to_text(self) -> str:
    metrics = ', '.join(f'{k}={v:.4f}' for k, v in sorted(self.test_metrics.items())
                        if not k.endswith('_diff') or k == 'binary_accuracy_diff')
    lines = [f'run {self.run_id}: {len(self.executions)} executions in {self.seconds:.0f} s',
             '  ' + ', '.join(f'{k}: {v}' for k, v in self.executions.items()),
             f'  test split: {metrics or "(no evaluation)"}',
             f'  blessed: {self.blessed}' + (
                 f' ({"; ".join(self.not_blessed_because)})' if self.not_blessed_because
                 and not self.blessed else ''),
             f'  pushed model: {self.pushed_model or "(none: not blessed)"}',
             f'  metadata: {self.metadata_path}',
             f'  pipeline root: {self.pipeline_root}',
             f'  report: {self.report or "(not written)"}']
    return '\n'.join(lines)


class DataError(ValueError):
  """The data the configuration names is missing or does not match it; nothing was touched."""


def ingest_settings(config: configs.PipelineConfig) -> dict:
  """The `ingest.ingest` settings `run` uses (and checks existing clips against)."""
  return dict(clip=config.clip_config(), dataset=config.dataset_config())


def reingest_command(config: configs.PipelineConfig, videos_dir: str) -> str:
  """The `vivit-tfx ingest` command that makes the clips this run wants."""
  h, w = config.frame_size
  options = [f'--num-frames {config.num_frames}', f'--frame-size {h}x{w}']
  defaults = configs.PipelineConfig()
  for name in ('layout', 'classes', 'positive_class', 'group_regex', 'sample_fps',
               'max_duration_s'):
    if getattr(config, name) != getattr(defaults, name):
      options.append(f'--{name.replace("_", "-")} {getattr(config, name)}')
  return (f'vivit-tfx ingest --input {videos_dir} --output {config.clips_dir} '
          + ' '.join(options) + ' --overwrite')


@dataclasses.dataclass(frozen=True)
class DataPlan:
  """What `prepare_data` will do: the videos folder it reads, and whether it uses the clips as
  they are, writes synthetic videos first, and (re-)ingests."""
  videos_dir: str
  use_clips: bool = False
  synthetic: bool = False
  ingest: bool = False


def check_data(config: configs.PipelineConfig) -> DataPlan:
  """Read-only: what `prepare_data` will do, or DataError (one line) when it must not.

  Synthetic videos are written only at the default path; a missing user path is an error.
  Existing clips are used only if their marker names the same input and settings; otherwise
  the run stops with the command that re-ingests (`--overwrite` lets `run` do it itself, and
  only over an ingest output that holds nothing but ingest's files).
  """
  from vivit_tfx.data import ingest_output, remote_files  # pylint: disable=g-import-not-at-top
  videos_dir = config.videos_dir
  default_videos = os.path.normpath(videos_dir) == os.path.normpath(configs.DEFAULT_VIDEOS_DIR)
  clips_made = ingest_output.read_provenance(config.clips_dir)
  if (config.input_mode == 'tfrecords' and default_videos and clips_made is not None
      and clips_made.input_root != os.path.realpath(videos_dir)):
    videos_dir = clips_made.input_root  # no --videos-dir given: the clips' own input is the data
  wanted = ingest_output.provenance_for(videos_dir, **ingest_settings(config))
  if config.input_mode == 'tfrecords' and clips_made is not None and (
      clips_made.fingerprint == wanted.fingerprint):
    return DataPlan(videos_dir, use_clips=True)
  synthetic = not remote_files.exists(videos_dir)
  if synthetic and (videos_dir != config.videos_dir or not default_videos):
    raise DataError(f'{videos_dir}: videos folder does not exist (nothing was written; '
                    'check --videos-dir)')
  if config.input_mode != 'tfrecords':
    return DataPlan(videos_dir, synthetic=synthetic)
  if clips_made is not None and not config.overwrite:
    raise DataError(
        f'{config.clips_dir}: clips were made from other input or settings ('
        + '; '.join(ingest_output.differences(clips_made, wanted)[:4])
        + f'); nothing was changed. Re-ingest with: {reingest_command(config, videos_dir)}'
        ' (or pass --overwrite true to `run`, or choose another --clips-dir)')
  try:
    ingest_output.check_target(videos_dir, config.clips_dir, wanted, config.overwrite)
  except ingest_output.OutputError as e:
    raise DataError(str(e)) from None
  return DataPlan(videos_dir, synthetic=synthetic, ingest=True)


def prepare_data(config: configs.PipelineConfig, progress: bool = True) -> None:
  """Makes sure the clips the pipeline reads were made from `videos_dir` with this config
  (`check_data` says how), writing synthetic videos and ingesting as needed."""
  from vivit_tfx.data import ingest_output, synthetic  # pylint: disable=g-import-not-at-top
  plan = check_data(config)
  if plan.use_clips:
    made = ingest_output.read_provenance(config.clips_dir)
    print(f'[run] using clips in {config.clips_dir} (ingested from {made.input_root})')
    warn_splits(config)
    return
  if plan.synthetic:
    print(f'[run] {plan.videos_dir} absent: writing {config.synthetic_clips} synthetic videos')
    synthetic.generate(plan.videos_dir,
                       synthetic.SyntheticConfig(num_clips=config.synthetic_clips),
                       progress=progress)
  if not plan.ingest:
    return
  _ingest(plan.videos_dir, config.clips_dir, config.overwrite, progress, '',
          **ingest_settings(config))
  warn_splits(config)


def _ingest(videos: str, clips: str, overwrite: bool, progress: bool, what: str,
            **settings) -> None:
  """Ingests `videos` into `clips` and prints the summary; a failure is a DataError whose
  line starts with `what` (the option that named the videos, or '')."""
  from vivit_tfx.data import ingest_output  # pylint: disable=g-import-not-at-top
  try:
    result = ingest_output.ingest_into(videos, clips, overwrite=overwrite, progress=progress,
                                       **settings)
  except ingest_output.NothingUsable as e:
    print(e.summary.to_text())
    raise DataError(f'{what}{e}') from None
  except (ingest_output.OutputError, FileNotFoundError) as e:
    raise DataError(f'{what}{e}') from None
  print(result.to_text())


def warn_splits(config: configs.PipelineConfig) -> List[str]:
  """Before training: one line per class whose ingested splits cannot meet this run's
  blessing minimums (printed, and returned)."""
  from vivit_tfx.data import ingest, ingest_output  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(config.clips_dir, ingest.SUMMARY)) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return []
  made = ingest_output.read_provenance(config.clips_dir)
  test_share = (made.settings.get('splits') or {}).get('test') if made else None
  lines = configs.split_warnings(summary.get('clips', {}), summary.get('classes', []),
                                 config.min_test_examples_per_class,
                                 config.min_test_fraction_per_class,
                                 test_share or ingest.SplitConfig().test)
  for line in lines:
    print(f'[run] warning: {line}')
  return lines


def prepare_unlabeled(config: configs.PipelineConfig, progress: bool = True) -> None:
  """Ingests --unlabeled-videos (any layout, labels ignored, all to the train split) into
  `config.unlabeled_clips`, unless the clips there were made from the same input and settings."""
  from vivit_tfx.data import ingest, ingest_output  # pylint: disable=g-import-not-at-top
  if not config.unlabeled_videos:
    return
  settings = dict(clip=config.clip_config(), dataset=ingest.DatasetConfig(layout='unlabeled'),
                  splits=ingest.TRAIN_ONLY)
  made = ingest_output.read_provenance(config.unlabeled_clips)
  wanted = ingest_output.provenance_for(config.unlabeled_videos, **settings)
  if made is not None and made.fingerprint == wanted.fingerprint:
    print(f'[run] using unlabelled clips in {config.unlabeled_clips}')
    return
  _ingest(config.unlabeled_videos, config.unlabeled_clips, config.overwrite, progress,
          '--unlabeled-videos: ', **settings)


def run_pipeline(config: configs.PipelineConfig) -> str:
  """Runs the pipeline with LocalDagRunner; returns the id of the run it started.

  Call with the output root's RunLock held (`run` does): traces of an interrupted run are
  cleaned up first, and this run's id is the one run it added to ML Metadata.
  """
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import baseline  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline.pipeline import create_pipeline, dataset_classes  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
  for line in run_guard.recover_interrupted_runs(config.metadata_path, config.pipeline_root):
    print(f'[run] {line}')
  before = _run_names(config)
  readable = baseline.check(config.metadata_path, config.clip_config().stored_frames,
                            dataset_classes(config))
  if readable:
    print(f'[run] {readable}', flush=True)
  tfx_pipeline = create_pipeline(
      config, tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.abspath(config.metadata_path)), baseline=not readable)
  tfx.orchestration.LocalDagRunner().run(tfx_pipeline)
  run_id = run_guard.new_run_id(before, _run_names(config))
  if run_id is None:
    raise RuntimeError(f'the pipeline recorded no run in {config.metadata_path}')
  return run_id


def _run_names(config: configs.PipelineConfig) -> List[str]:
  if not os.path.exists(config.metadata_path):
    return []
  return [r.name for r in metadata.runs(metadata.open_sqlite(config.metadata_path),
                                        config.pipeline_name)]


def summarize(config: configs.PipelineConfig, run_id: Optional[str] = None,
              seconds: float = 0.0) -> RunSummary:
  """Reads a run's outcome back from ML Metadata: states, test metrics, blessing, push."""
  store = metadata.open_sqlite(config.metadata_path, read_only=True)
  runs = metadata.runs(store, config.pipeline_name)
  run = next((r for r in runs if r.name == run_id), runs[-1]) if runs else None
  if run is None:
    raise ValueError(f'no run of {config.pipeline_name} in {config.metadata_path}')
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  infos = {metadata.node_id(store, i.execution) or i.type_name: i
           for i in metadata.executions_of_run(store, run)}
  states, test_metrics, blessed, pushed, because = {}, {}, None, None, []
  for node, info in infos.items():
    states[node] = info.state
    for artifact in info.outputs.get('evaluation', []):
      test_metrics = tfma_results.overall_metrics(artifact.uri)
      because = tfma_results.validation(artifact.uri, report.model_classes(infos.get('Trainer')),
                                        config.min_test_examples_per_class)[1]
    for artifact in info.outputs.get('blessing', []):
      blessed = bool(metadata.property_value(artifact, 'blessed'))
    for artifact in info.outputs.get('pushed_model', []):
      if metadata.property_value(artifact, 'pushed'):
        pushed = metadata.property_value(artifact, 'pushed_destination')
  return RunSummary(run.name, seconds, states, test_metrics, blessed, pushed,
                    os.path.abspath(config.metadata_path), config.pipeline_root,
                    not_blessed_because=because)


def run(config: configs.PipelineConfig, progress: bool = True) -> RunSummary:
  """The main job: validates the whole configuration before any data is touched, takes the
  output root's lock, prepares the data, runs the pipeline and summarises this run."""
  start = time.time()
  config.validate()
  with run_guard.RunLock(config.output_root, wait=config.if_busy == 'wait'):
    prepare_data(config, progress)
    prepare_unlabeled(config, progress)
    run_id = run_pipeline(config)
    summary = summarize(config, run_id, time.time() - start)
    from vivit_tfx import outputs  # pylint: disable=g-import-not-at-top
    from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
    try:
      summary.report = os.path.abspath(report.build(config.replace(overwrite=False), run_id))
    except (outputs.OutputExists, OSError) as e:  # the run itself succeeded: say so
      summary.report = f'not written: {e}'
  return summary
