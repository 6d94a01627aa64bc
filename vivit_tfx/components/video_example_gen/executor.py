"""VideoExampleGen's executor: video files → clip tf.Examples on Beam (reuses ingestion).

Inputs are `<input_base>/<split pattern>` globs over an RLVS folder; the label is the class
folder. Bad files are skipped and counted (Beam counters `videos_ok` / `videos_skipped`), each
logged with its reason.
"""
import json
import os
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from absl import logging
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor

from vivit_tfx.components import ingest, remote_files


def clip_config_from(exec_properties: Dict[str, Any]) -> ingest.ClipConfig:
  custom = exec_properties.get('custom_config') or '{}'
  custom = json.loads(custom) if isinstance(custom, str) else dict(custom)
  return ingest.ClipConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in custom.get('clip', {}).items()})


def _read_example(path: str, rel: str, label: int, clip: ingest.ClipConfig):
  """ingest.read_example on any URI: OpenCV reads a local temporary copy of a remote video."""
  try:
    with remote_files.local_copy(path) as local:
      return ingest.read_example(local, rel, label, clip)
  except (tf.errors.OpError, OSError) as e:
    return None, f'cannot copy it to read it: {type(e).__name__}: {e}'.splitlines()[0]


class _ReadVideo(beam.DoFn):
  """path → tf.train.Example (or nothing, counted and logged, when the file is bad)."""

  def __init__(self, root: str, clip: ingest.ClipConfig):
    self._root, self._clip = root, clip
    self._ok = beam.metrics.Metrics.counter('VideoExampleGen', 'videos_ok')
    self._skipped = beam.metrics.Metrics.counter('VideoExampleGen', 'videos_skipped')

  def process(self, path: str):
    rel = os.path.relpath(path, self._root)
    top = rel.split(os.sep)[0]
    label = ingest.label_of(top)
    if label is None:
      example, reason = None, f'unknown class folder {top!r}'
    else:
      example, reason = _read_example(path, rel, label, self._clip)
    if example is None:
      self._skipped.inc()
      logging.warning('VideoExampleGen skipped %s: %s', rel, reason)
      return
    self._ok.inc()
    yield example


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _VideoToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],  # pylint: disable=invalid-name
                    split_pattern: str) -> beam.pvalue.PCollection:
  root = exec_properties['input_base']
  paths = sorted(p for p in tf.io.gfile.glob(os.path.join(root, split_pattern))
                 if p.lower().endswith(ingest.video_reader.VIDEO_EXTENSIONS))
  logging.info('VideoExampleGen: %d video files match %s', len(paths), split_pattern)
  return (pipeline
          | 'ListVideos' >> beam.Create(paths)
          | 'Spread' >> beam.Reshuffle()
          | 'ReadVideos' >> beam.ParDo(_ReadVideo(root, clip_config_from(exec_properties))))


class Executor(BaseExampleGenExecutor):
  """Reads video files into tf.Examples; splits come from ExampleGen's input/output config."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _VideoToExample
