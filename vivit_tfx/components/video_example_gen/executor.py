"""VideoExampleGen's executor: video files → clip tf.Examples on Beam (reuses ingestion).

The input folder is read with its layout (`custom_config['dataset']`, a DatasetConfig dict) and
split exactly as `vivit-tfx ingest` splits it: every video is decoded first, then the videos that
decoded are assigned to train/eval/test by `layouts.assign_splits` (group-safe, stratified,
`custom_config['splits']`, a SplitConfig dict), so switching input mode keeps the test set.
Bad files are skipped and counted (Beam counters `videos_ok` / `videos_skipped`), each logged
with its reason.
"""
import dataclasses
import json
import os
from typing import Any, Dict

import apache_beam as beam
from absl import logging
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from vivit_tfx.data import ingest, layouts, remote_files


def _custom(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  custom = exec_properties.get('custom_config') or '{}'
  return json.loads(custom) if isinstance(custom, str) else dict(custom)


def _frozen(cls, values: Dict[str, Any]):
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def clip_config_from(exec_properties: Dict[str, Any]) -> ingest.ClipConfig:
  return _frozen(ingest.ClipConfig, _custom(exec_properties).get('clip', {}))


def dataset_config_from(exec_properties: Dict[str, Any]) -> layouts.DatasetConfig:
  return _frozen(layouts.DatasetConfig, _custom(exec_properties).get('dataset', {}))


def split_config_from(exec_properties: Dict[str, Any]) -> ingest.SplitConfig:
  return _frozen(ingest.SplitConfig, _custom(exec_properties).get('splits', {}))


def _read_example(path: str, rel: str, label: int, clip: ingest.ClipConfig, source: str = ''):
  """ingest.read_example on any URI: the decoder reads a local temporary copy of a remote video."""
  try:
    with remote_files.local_copy(path) as local:
      return ingest.read_example(local, rel, label, clip, source)
  except Exception as e:  # pylint: disable=broad-except  (tf.errors.OpError, OSError)
    return None, f'cannot copy it to read it: {type(e).__name__}: {e}'.splitlines()[0]


class _ReadVideo(beam.DoFn):
  """candidate → (candidate, tf.train.Example), or nothing (counted, logged) for a bad file."""

  def __init__(self, root: str, clip: ingest.ClipConfig):
    self._root, self._clip = root, clip
    self._ok = beam.metrics.Metrics.counter('VideoExampleGen', 'videos_ok')
    self._skipped = beam.metrics.Metrics.counter('VideoExampleGen', 'videos_skipped')

  def process(self, candidate: layouts.Candidate):
    example, reason = _read_example(os.path.join(self._root, candidate.path), candidate.path,
                                    candidate.label, self._clip, candidate.source)
    if example is None:
      self._skipped.inc()
      logging.warning('VideoExampleGen skipped %s: %s', candidate.path, reason)
      return
    self._ok.inc()
    yield candidate, example


def standalone_exec_properties(input_base: str, clip: ingest.ClipConfig,
                               split_names=layouts.SPLITS) -> Dict[str, Any]:
  """The executor's properties outside a pipeline (benchmarks, tests): the videos under
  `input_base` (class folders), GZIP TFRecords of `split_names`, split as ingest splits."""
  return {
      'input_base': input_base,
      'input_config': proto_utils.proto_to_json(example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name='all', pattern='*/*')])),
      'output_config': proto_utils.proto_to_json(example_gen_pb2.Output(
          split_config=example_gen_pb2.SplitConfig(splits=[
              example_gen_pb2.SplitConfig.Split(name=s, hash_buckets=1) for s in split_names]))),
      'output_data_format': example_gen_pb2.FORMAT_TF_EXAMPLE,
      'output_file_format': example_gen_pb2.FORMAT_TFRECORDS_GZIP,
      'custom_config': json.dumps({'clip': dataclasses.asdict(clip)}),
  }


class Executor(BaseExampleGenExecutor):
  """Reads video files into tf.Examples, split like `vivit-tfx ingest` (not by hash)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    raise NotImplementedError('VideoExampleGen splits after decoding; see '
                              'GenerateExamplesByBeam')

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,  # pylint: disable=invalid-name
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties['output_config'], output_config)
    names = [s.name for s in output_config.split_config.splits] or list(layouts.SPLITS)
    unknown = set(names) - set(layouts.SPLITS)
    if unknown:
      raise ValueError(f'VideoExampleGen splits must be among {layouts.SPLITS}, got {names}')
    found = layouts.scan(exec_properties['input_base'], dataset_config_from(exec_properties))
    for path, reason in found.skipped:
      logging.warning('VideoExampleGen skipped %s: %s', path, reason)
    logging.info('VideoExampleGen: %d videos (layout %s, classes %s)', len(found.candidates),
                 found.layout, ', '.join(found.classes))
    splits = split_config_from(exec_properties)
    read = (pipeline
            | 'ListVideos' >> beam.Create(found.candidates)
            | 'Spread' >> beam.Reshuffle()
            | 'ReadVideos' >> beam.ParDo(_ReadVideo(found.root, clip_config_from(exec_properties))))
    split_of = (read
                | 'Decoded' >> beam.Map(lambda pair: pair[0])
                | 'All' >> beam.combiners.ToList()
                | 'AssignSplits' >> beam.Map(lambda cs: ingest.assign_splits(cs, splits)))
    parts = (read
             | 'Partition' >> beam.Partition(
                 lambda pair, n, split_of: names.index(split_of[pair[0].video_id])
                 if split_of[pair[0].video_id] in names else n - 1, len(names),
                 split_of=beam.pvalue.AsSingleton(split_of)))
    return {name: parts[i] | f'Examples[{name}]' >> beam.Map(lambda pair: pair[1])
            for i, name in enumerate(names)}
