"""The synthetic dataset is deterministic, varied, and its label lives in motion over time."""
import hashlib
import os

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from vivit_tfx.components import synthetic, video_reader


def test_plan_is_deterministic_balanced_and_varied():
  config = synthetic.SyntheticConfig(num_clips=60, seed=3)
  a, b = synthetic.plan(config), synthetic.plan(config)
  assert a == b
  assert sum(s.label for s in a) == 30
  assert {s.container for s in a} == {'mp4', 'avi'}
  assert len({(s.width, s.height) for s in a}) >= 3 and len({s.fps for s in a}) >= 3
  assert any(s.num_frames < 8 for s in a), 'some clips must be shorter than the clip length'
  assert synthetic.plan(synthetic.SyntheticConfig(num_clips=60, seed=4)) != a


def test_generate_is_deterministic(tmp_path):
  config = synthetic.SyntheticConfig(num_clips=4, seed=1)

  def digest(root):
    paths = synthetic.generate(str(root), config, workers=1, progress=False)
    return [(os.path.relpath(p, root), hashlib.sha1(open(p, 'rb').read()).hexdigest())
            for p in paths]

  assert digest(tmp_path / 'a') == digest(tmp_path / 'b')


def test_rlvs_layout_and_real_videos(video_root):
  assert sorted(os.listdir(video_root)) == ['NonViolence', 'Violence']
  assert all(f.startswith('V_') for f in os.listdir(os.path.join(video_root, 'Violence')))
  info = video_reader.probe(os.path.join(video_root, 'Violence', 'V_0001.mp4'))
  assert info.num_frames >= 2 and info.fps > 0


def test_label_needs_time_not_single_frames(tmp_path):
  """Single-frame pixel statistics stay near chance; a motion-energy feature separates."""
  root = str(tmp_path)
  paths = synthetic.generate(root, synthetic.SyntheticConfig(num_clips=80, seed=11),
                             workers=2, progress=False)
  labels = np.array(synthetic.labels_from_paths(paths))
  clips = [video_reader.read_clip(p, 8, (32, 32)).frames for p in paths]
  pixel = np.stack([synthetic.pixel_statistics(c[0]) for c in clips])
  motion = np.array([[synthetic.motion_energy(c)] for c in clips])
  model = LogisticRegression(max_iter=5000)
  pixel_acc = cross_val_score(model, pixel, labels, cv=4).mean()
  motion_acc = cross_val_score(model, motion, labels, cv=4).mean()
  assert pixel_acc < 0.68, pixel_acc
  assert motion_acc > 0.9, motion_acc
