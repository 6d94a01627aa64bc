"""Beam in parallel: the pipeline's Beam components (VideoExampleGen, StatisticsGen, Transform,
Evaluator) run on the DirectRunner's multi-process mode with two worker processes, the way
`--beam-preset direct` runs them in a Kubeflow pod."""
import glob
import os
import threading

import psutil
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from vivit_tfx.audit import metadata
from vivit_tfx.data import features
from vivit_tfx.pipeline import local_runner

from tests.conftest import tiny_config

pytestmark = pytest.mark.e2e

MULTI_PROCESS = '--direct_running_mode=multi_processing --direct_num_workers=2'


class WorkerCount(threading.Thread):
  """Polls this process's descendants: the most Beam SDK worker processes alive at once."""

  def __init__(self):
    super().__init__(daemon=True)
    self.most, self.done = 0, threading.Event()

  def run(self):
    while not self.done.wait(0.2):
      alive = set()
      for child in psutil.Process().children(recursive=True):
        try:
          line = child.cmdline()
        except psutil.Error:
          continue
        if any('sdk_worker_main' in a for a in line) and not line[0].endswith('sh'):
          alive.add(child.pid)
      self.most = max(self.most, len(alive))


def test_beam_components_run_on_two_worker_processes(video_root, tmp_path):
  config = tiny_config('', tmp_path, input_mode='videos', videos_dir=video_root,
                       beam_args=MULTI_PROCESS)
  workers = WorkerCount()
  workers.start()
  try:
    run_id = local_runner.run_pipeline(config)
  finally:
    workers.done.set()
    workers.join()
  # --direct_num_workers=2: two worker processes ran at once (a pool's ending may overlap the
  # next component's start, so three can be seen together)
  assert workers.most >= 2, workers.most
  store = metadata.open_sqlite(config.metadata_path)
  run = next(r for r in metadata.runs(store, config.pipeline_name) if r.name == run_id)
  infos = {metadata.node_id(store, i.execution): i
           for i in metadata.executions_of_run(store, run)}
  for node in ('VideoExampleGen', 'StatisticsGen', 'Transform', 'Trainer', 'Evaluator'):
    assert infos[node].execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
  [examples] = infos['VideoExampleGen'].outputs['examples']
  ids = []
  files = glob.glob(os.path.join(examples.uri, 'Split-*', '*'))
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    ids.append(tf.train.Example.FromString(record.numpy()).features.feature[
        features.VIDEO_ID].bytes_list.value[0])
  assert len(ids) == len(set(ids)) == 24  # every video once across the worker processes
  [evaluation] = infos['Evaluator'].outputs['evaluation']
  assert tf.io.gfile.listdir(evaluation.uri)
