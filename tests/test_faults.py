"""Fault tests: hostile inputs, an interrupted training run, a worse candidate model."""
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import ingest, synthetic
from vivit_tfx.pipeline import local_runner
from vivit_tfx.audit import metadata, run_summary
from tests.conftest import TINY_CLIP, tiny_config


def test_hostile_inputs_are_accounted_for(video_root, tmp_path, capsys):
  root = str(tmp_path / 'videos')
  shutil.copytree(video_root, root)
  bad = synthetic.add_bad_inputs(root)  # zero-byte, truncated, text-as-mp4, .txt, unknown folder
  v = os.path.join(root, 'Violence')
  synthetic.write_video(os.path.join(v, 'one_frame.mp4'),
                        np.full((1, 48, 64, 3), 120, np.uint8), fps=10)
  synthetic.write_video(os.path.join(v, 'huge.avi'),
                        np.full((2, 2160, 3840, 3), 60, np.uint8), fps=5)
  good = sorted(f for f in os.listdir(v) if f.startswith('V_'))[0]
  shutil.copy(os.path.join(v, good), os.path.join(v, 'fight scène 名前.mp4'))
  os.mkfifo(os.path.join(v, 'pipe.mp4'))  # unreadable as a file: opening it would block
  os.makedirs(os.path.join(v, 'folder.mp4'))  # a directory with a video's name
  unreadable = os.path.join(v, 'no_permission.mp4')
  shutil.copy(os.path.join(v, good), unreadable)
  os.chmod(unreadable, 0)
  os.symlink('loop.mp4', os.path.join(v, 'loop.mp4'))

  out = str(tmp_path / 'out')
  summary = ingest.ingest(root, out, clip=TINY_CLIP, workers=2, progress=False)
  manifest = {e['path']: e for e in ingest.read_manifest(out)}

  listed = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root)
            for f in files}
  assert set(manifest) == listed  # every input exactly once (the folder.mp4 dir holds none)
  ok = lambda name: manifest[f'Violence/{name}']['status'] == 'ok'
  assert ok('one_frame.mp4') and ok('huge.avi') and ok('fight scène 名前.mp4')
  assert 'not a regular file' in manifest['Violence/pipe.mp4']['reason']
  assert 'not a regular file' in manifest['Violence/loop.mp4']['reason']
  # As root the file is still readable; otherwise it is skipped as 'permission denied'.
  entry = manifest['Violence/no_permission.mp4']
  assert entry['status'] == 'ok' if os.geteuid() == 0 else 'permission denied' in entry['reason']
  assert len(summary.skipped) == len(bad) + 2 + (entry['status'] == 'skipped')
  assert summary.num_written == 24 + 3 + (entry['status'] == 'ok')
  assert 'Traceback' not in capsys.readouterr().err


# --- pipeline faults (LocalDagRunner, tiny clips) ------------------------------------------



def _store(config):
  return metadata.open_sqlite(config.metadata_path)


def _pushed(store):
  return [a for a in store.get_artifacts_by_type('PushedModel')
          if metadata.property_value(a, 'pushed')]


def _versions(config):
  base = os.path.join(config.serving_dir, config.model_name)
  return sorted(os.listdir(base)) if os.path.isdir(base) else []


class _Interrupt(keras.callbacks.Callback):
  """Stands in for the Trainer's TensorBoard callback and dies in the middle of training."""

  def __init__(self, *args, **kwargs):
    super().__init__()

  def on_train_batch_end(self, batch, logs=None):
    if batch == 1:
      raise RuntimeError('simulated interruption during training')


@pytest.mark.e2e
def test_interrupted_training_then_rerun(clips_dir, tmp_path, monkeypatch):
  config = tiny_config(clips_dir, tmp_path)
  monkeypatch.setattr(keras.callbacks, 'TensorBoard', _Interrupt)
  with pytest.raises(RuntimeError):
    local_runner.run_pipeline(config)
  assert _versions(config) == [] and not _pushed(_store(config))
  monkeypatch.undo()

  run_id = local_runner.run_pipeline(config)
  summary = run_summary.summarize(config, run_id)
  assert summary.executions['Trainer'] == 'COMPLETE'
  assert summary.executions['Transform'] == 'CACHED'  # the work before the failure is kept
  store = _store(config)
  trainer_states = sorted(info.state for info in metadata.describe_executions(
      store, [e for e in store.get_executions() if metadata.node_id(store, e) == 'Trainer']))
  assert trainer_states == ['COMPLETE', 'FAILED']
  assert len(_pushed(store)) == 1 and len(_versions(config)) == 1  # no orphaned push


def _brightness_clips(out: str, flip_train: bool = False) -> str:
  """Clip records whose label is plain brightness (a signal any model learns in a few steps):
  24 train, 8 eval, 8 test. With `flip_train`, train/eval labels are inverted; test is true."""
  from vivit_tfx.data import clip_example, video_reader  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, n in (('train', 24), ('eval', 8), ('test', 8)):
    os.makedirs(os.path.join(out, split))
    with tf.io.TFRecordWriter(os.path.join(out, split, 'clips.tfrecord')) as w:
      for i in range(n):
        label = i % 2
        level = (170 if label else 70) + rng.integers(-20, 20)
        frames = np.clip(rng.normal(level, 20, (8, 32, 32, 3)), 0, 255).astype(np.uint8)
        clip = video_reader.Clip(frames, video_reader.VideoInfo(8, 10.0, 32, 32), list(range(8)))
        stored = 1 - label if (flip_train and split != 'test') else label
        w.write(clip_example.clip_to_example(clip, stored, f'{split}/{i}', f'{split}/{i}.mp4')
                .SerializeToString())
  return out


@pytest.mark.e2e
def test_worse_candidate_is_not_blessed_nor_pushed(tmp_path):
  keras.utils.set_random_seed(1)
  # The records hold one clip each (8 frames): the whole-video rule (sample_fps 0), one view.
  good = tiny_config(_brightness_clips(str(tmp_path / 'clips')), tmp_path, train_steps=30,
                     steps_per_epoch=10, learning_rate=3e-3, sample_fps=0.0, num_views=1)
  first = run_summary.summarize(good, local_runner.run_pipeline(good))
  assert first.blessed and first.test_metrics['binary_accuracy'] >= 0.75, first.test_metrics
  before = _versions(good)
  assert len(before) == 1

  # Same pipeline, candidate trained on inverted labels, judged on the same true test split.
  worse = good.replace(clips_dir=_brightness_clips(str(tmp_path / 'flipped'), flip_train=True))
  second = run_summary.summarize(worse, local_runner.run_pipeline(worse))
  assert second.test_metrics['binary_accuracy'] < first.test_metrics['binary_accuracy']
  assert second.blessed is False and second.pushed_model is None
  assert _versions(good) == before  # the serving dir still holds only the blessed version
