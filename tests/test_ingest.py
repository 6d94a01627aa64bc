"""Ingestion: records decode to the configured shape, splits, manifest, bad inputs, CLI."""
import collections
import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import clip_example, ingest, sampling, synthetic
from vivit_tfx.data import features
from vivit_tfx import cli
from tests.conftest import TINY_CLIP


def _records(clips_dir, split):
  files = sorted(glob.glob(os.path.join(clips_dir, split, '*.tfrecord')))
  return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def test_frames_decode_to_configured_shape(clips_dir):
  example = _records(clips_dir, 'train')[0]
  frames = clip_example.decode_frames(example)  # the video's frames at the sampling rate
  f = example.features.feature
  kept = sampling.rate_indices(f[features.NUM_FRAMES_ORIGINAL].int64_list.value[0],
                                   f[features.FPS].float_list.value[0], TINY_CLIP.sample_fps,
                                   TINY_CLIP.stored_frames)
  assert frames.shape == (len(kept), 32, 32, 3) and frames.dtype == np.uint8
  assert len(f[features.FRAMES].bytes_list.value) == TINY_CLIP.stored_frames == 80  # N slots
  assert f[features.LABEL].int64_list.value[0] in (0, 1)
  assert f[features.NUM_FRAMES_ORIGINAL].int64_list.value[0] >= 2
  assert f[features.FPS].float_list.value[0] > 0
  assert f[features.CONTAINER].bytes_list.value[0] in (b'mp4', b'avi')
  assert f[features.SOURCE_PATH].bytes_list.value[0].decode().startswith(
      ('Violence/', 'NonViolence/'))


def test_splits_disjoint_by_video_and_stratified(clips_dir):
  ids = {}
  for split in ingest.SPLITS:
    labels = collections.Counter()
    for ex in _records(clips_dir, split):
      vid = ex.features.feature[features.VIDEO_ID].bytes_list.value[0]
      assert vid not in ids, f'{vid} in {ids.get(vid)} and {split}'
      ids[vid] = split
      labels[ex.features.feature[features.LABEL].int64_list.value[0]] += 1
    assert labels[0] >= 1 and labels[1] >= 1, f'{split} misses a class: {labels}'
    assert abs(labels[0] - labels[1]) <= 1, f'{split} not stratified: {labels}'
  assert len(ids) == 24


def test_split_assignment_is_deterministic_and_seeded():
  cands = [ingest.Candidate(f'{c}/x{i}.mp4', l) for l, c in enumerate(['NonViolence', 'Violence'])
           for i in range(40)]
  a = ingest.assign_splits(cands, ingest.SplitConfig(seed=1))
  assert a == ingest.assign_splits(list(reversed(cands)), ingest.SplitConfig(seed=1))
  assert a != ingest.assign_splits(cands, ingest.SplitConfig(seed=2))
  counts = collections.Counter(a.values())
  assert counts == {'train': 56, 'eval': 12, 'test': 12}


@pytest.fixture()
def hostile_root(video_root, tmp_path):
  root = str(tmp_path / 'videos')
  shutil.copytree(video_root, root)
  bad = synthetic.add_bad_inputs(root)
  os.symlink('loop.mp4', os.path.join(root, 'Violence', 'loop.mp4'))  # a symlink loop
  os.symlink(root, os.path.join(root, 'Violence', 'dir_link'))  # a folder link, not followed
  return root, bad


def test_manifest_accounts_for_every_input(hostile_root, tmp_path):
  root, bad = hostile_root
  out = str(tmp_path / 'out')
  summary = ingest.ingest(root, out, clip=TINY_CLIP, workers=2, progress=False)
  manifest = ingest.read_manifest(out)
  inputs = sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, dirs, files in os.walk(root) for f in files + [
                      x for x in dirs if os.path.islink(os.path.join(d, x))])
  assert sorted(e['path'] for e in manifest) == inputs  # each input exactly once
  skipped = {e['path']: e['reason'] for e in manifest if e['status'] == 'skipped'}
  assert len(skipped) == len(bad) + 2
  assert 'empty file' in skipped['Violence/zero_bytes.mp4']
  assert 'unknown class folder' in skipped['Unsorted/mystery.mp4']
  assert 'unsupported extension' in skipped['NonViolence/notes.txt']
  assert 'not a regular file' in skipped['Violence/loop.mp4']
  assert 'not followed' in skipped['Violence/dir_link']
  assert summary.num_written == 24 and len(summary.skipped) == len(skipped)
  assert all(e['split'] in ingest.SPLITS for e in manifest if e['status'] == 'ok')


def test_cli_ingest_reports_and_exits_zero(hostile_root, tmp_path, capsys):
  root, _ = hostile_root
  rc = cli.main(['ingest', '--input', root, '--output', str(tmp_path / 'o'),
                 '--frame-size', '32x32', '--workers', '2'])
  out = capsys.readouterr().out
  assert rc == 0
  assert 'clips written: 24' in out and 'skipped Violence/zero_bytes.mp4: empty file' in out


def test_cli_ingest_nothing_usable_fails_cleanly(tmp_path, capsys):
  (tmp_path / 'in' / 'Violence').mkdir(parents=True)
  (tmp_path / 'in' / 'Violence' / 'broken.mp4').write_bytes(b'nope')
  rc = cli.main(['ingest', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'o')])
  err = capsys.readouterr().err
  assert rc == 1 and 'nothing was written' in err and 'Traceback' not in err
