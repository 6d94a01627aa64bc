"""The synthetic dataset is deterministic, varied, and its label lives in motion over time."""
import hashlib
import os

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from vivit_tfx.data import sampling, synthetic, video_reader
from vivit_tfx.data.frames import resize_and_crop_array


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


def test_hard_set_defeats_single_frames_and_motion_energy():
  """`--difficulty hard` on a fresh draw: one frame's pixel statistics ≤ 0.55 accuracy, a
  motion-energy classifier (over the clip and over consecutive frames) ≤ 0.70."""
  specs = synthetic.plan(synthetic.hard_config(num_clips=200, seed=2026))
  assert min(s.num_frames / s.fps for s in specs) >= 2 - 0.1
  assert max(s.num_frames / s.fps for s in specs) > 20
  pixel, motion = [], []
  for spec in specs:
    middle = spec.num_frames // 2
    spread = sampling.uniform_indices(spec.num_frames, 8)
    frames = synthetic.render(spec, spread + list(range(middle - 4, middle + 4)))
    frames = resize_and_crop_array(frames, (32, 32))
    pixel.append(synthetic.pixel_statistics(frames[0]))
    motion.append([synthetic.motion_energy(frames[:8]), synthetic.motion_energy(frames[8:])])
  labels = [s.label for s in specs]
  model = LogisticRegression(max_iter=5000)
  pixel_acc = cross_val_score(model, np.array(pixel), labels, cv=4).mean()
  motion_acc = cross_val_score(model, np.array(motion), labels, cv=4).mean()
  assert pixel_acc <= 0.55, pixel_acc
  assert motion_acc <= 0.70, motion_acc


def test_hard_set_writes_real_videos(tmp_path):
  config = synthetic.hard_config(num_clips=2, seed=1)
  paths = synthetic.generate(str(tmp_path), config, workers=1, progress=False)
  for path, spec in zip(paths, synthetic.plan(config)):
    info = video_reader.probe(path)
    assert info.num_frames == spec.num_frames and 2 - 0.1 <= info.duration_s <= 30
