"""`vivit-tfx scan`'s command-line options and the Beam pipeline options they become.

Kept free of TensorFlow and Beam imports so that `vivit-tfx --help` stays fast. Any Beam
option passes through `--beam-args` unchanged (Dataflow, Flink, Spark: `BEAM_PRESETS`, the
ones `run --beam-preset` uses); `--workers N` is the DirectRunner's
`--direct_running_mode=multi_processing --direct_num_workers=N`.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
from typing import List

from vivit_tfx.kubeflow.options import BEAM_PRESETS
from vivit_tfx.pipeline import beam_options


@dataclasses.dataclass
class ScanConfig:
  """What to scan, with which model, where the outputs go, and how Beam runs it."""
  input: str  # a folder, a glob or a gs:// prefix
  out: str
  model_dir: str
  stride_s: float = 1.0
  threshold: float = 0.5
  batch_size: int = 16
  range_s: float = 300.0  # seconds of windows per work item: long videos split across workers
  workers: int = 0  # DirectRunner worker processes (0: one per core; 1: in this process)
  threads_per_worker: int = 0  # decoder and TensorFlow threads per worker (0: their default)
  beam_args: List[str] = dataclasses.field(default_factory=list)
  # The drift check's training clips: ingest's output (train/) or an Examples artifact
  # (Split-train/); 'auto': the statistics the model carries, else the Examples the model was
  # trained on, from ML Metadata; '': none.
  reference: str = ''
  metadata_path: str = 'output/metadata.sqlite'  # where 'auto' looks
  drift_threshold: float = 0.3  # Jensen-Shannon divergence above which a feature has drifted
  reference_max_clips: int = 2000


def check(config: ScanConfig) -> None:
  """Raises ValueError naming every setting out of its range, before anything runs."""
  problems = [f'{name} must be {rule}, got {value:g}' for name, value, ok, rule in (
      ('--stride-s', config.stride_s, config.stride_s > 0, 'positive'),
      ('--range-s', config.range_s, config.range_s > 0, 'positive'),
      ('--batch-size', config.batch_size, config.batch_size >= 1, 'at least 1'),
      ('--workers', config.workers, config.workers >= 0, '0 or more'),
      ('--threads-per-worker', config.threads_per_worker, config.threads_per_worker >= 0,
       '0 or more'),
      ('--threshold', config.threshold, 0 <= config.threshold <= 1, 'within [0, 1]'),
      ('--drift-threshold', config.drift_threshold, 0 < config.drift_threshold <= 1,
       'within (0, 1]')) if not ok]
  if problems:
    raise ValueError('; '.join(problems))


def beam_arguments(config: ScanConfig) -> List[str]:
  """The Beam options of a scan: `beam_args` as given; on the DirectRunner (no --runner, or
  --runner=DirectRunner) `workers` worker processes unless the args name their own."""
  args = list(config.beam_args)
  if beam_options.is_direct(args) and not beam_options.has(args, '--direct_num_workers'):
    workers = config.workers or os.cpu_count() or 1
    if workers > 1:
      args += ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']
  return args


def pipeline_options(config: ScanConfig):
  """Beam PipelineOptions of the scan (loads Beam)."""
  # local: Beam (~1 s), not needed for --help
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  return PipelineOptions(beam_arguments(config))


def preset_arguments(name: str) -> List[str]:
  """A cluster runner's options as `run --beam-preset` writes them (<…>: values to fill in)."""
  return shlex.split(BEAM_PRESETS[name])
