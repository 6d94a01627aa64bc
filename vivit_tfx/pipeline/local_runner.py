"""The main job on this machine: prepare the data, take the output root's lock, run the
pipeline on LocalDagRunner (sqlite ML Metadata), and summarise the run."""
from __future__ import annotations

import os
import time
from typing import List

from tfx import v1 as tfx

from vivit_tfx.audit import metadata, run_summary
from vivit_tfx.data import prepare
from vivit_tfx.pipeline import baseline, configs, run_guard
from vivit_tfx.pipeline.pipeline import (LAST_PUSHED, create_pipeline, dataset_classes,
                                         train_steps)


def run_pipeline(config: configs.PipelineConfig) -> str:
  """Runs the pipeline with LocalDagRunner; returns the id of the run it started.

  Call with the output root's RunLock held (`run` does): traces of an interrupted run are
  cleaned up first, and this run's id is the one run it added to ML Metadata.
  """
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
          os.path.abspath(config.metadata_path)),
      baseline='' if readable else LAST_PUSHED)
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


def run(config: configs.PipelineConfig, progress: bool = True) -> run_summary.RunSummary:
  """The main job: validates the whole configuration before any data is touched, takes the
  output root's lock, prepares the data, runs the pipeline and summarises this run."""
  start = time.time()
  config = config.resolve()
  config.validate()
  with run_guard.RunLock(config.output_root, wait=config.if_busy == 'wait'):
    prepare.prepare_data(config, progress)
    prepare.prepare_unlabeled(config, progress)
    if not config.train_steps and progress:
      print(f'[run] training: {train_steps(config)} steps (--train-steps 0: '
            f'{configs.STEPS_PER_TRAIN_VIDEO} per training video' +
            (', the teacher\'s, and the student\'s on top' if config.self_training()
             and not config.self_training_config().fixmatch else '') +
            ')', flush=True)
    run_id = run_pipeline(config)
    summary = run_summary.summarize(config, run_id, time.time() - start)
    # The report never replaces a file of the user's, whatever --overwrite says about clips.
    summary = run_summary.add_report(summary, config.replace(overwrite=False))
    return run_summary.add_model_card(summary, config)
