"""FixMatch in the Trainer (models/trainer/fixmatch.py): the consistency term, its train step
on two mirrored replicas against one device, the unlabelled clips' batches, the settings, and
the Trainer's run_fn on two replicas."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import export, fixmatch, training
from vivit_tfx.models.trainer.self_training import SelfTrainingConfig
from vivit_tfx.pipeline import configs
from tests.conftest import one_step_from_the_same_start

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV = {'num_frames': 4, 'image_size': [16, 16], 'tokenizer': 'conv', 'conv_widths': [4, 8],
        'conv_strides': [[1, 2, 2], [1, 2, 2], [2, 1, 1]], 'hidden_size': 16, 'num_layers': 1,
        'num_heads': 2, 'mlp_dim': 32, 'batch_size': 2, 'checkpoint_steps': 2}


def test_consistency_counts_only_the_sure_clips():
  weak = tf.constant([[3.0], [-4.0], [0.5]])  # p(1) = .95, .02, .62: the third is unsure
  strong = tf.constant([[1.0], [2.0], [-7.0]])
  loss, kept = fixmatch.consistency(weak, strong, threshold=0.9)
  expected = (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(2.0))) / 3  # targets 1 and 0
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(kept) == pytest.approx(2 / 3)
  weak = tf.constant([[0.0, 4.0, 0.0], [1.0, 1.0, 1.0]])  # sure of class 1; unsure
  strong = tf.constant([[0.0, 0.0, 0.0], [9.0, -9.0, 0.0]])
  loss, kept = fixmatch.consistency(weak, strong, threshold=0.9)
  assert float(loss) == pytest.approx(np.log(3) / 2, rel=1e-5)
  assert float(kept) == pytest.approx(0.5)


def _one_step(objective, devices, k=1):
  """One step with `objective` of a tiny conv-tokenizer ViViT from seeded weights on
  `devices`: (the trained weights, the step's logs)."""
  rng = np.random.default_rng(4)
  x = {fixmatch.CLIPS: rng.random((8, 4, 16, 16, 3), np.float32),
       fixmatch.WEAK: rng.random((16, 4, 16, 16, 3), np.float32),
       fixmatch.STRONG: rng.random((16, 4, 16, 16, 3), np.float32)}
  if not isinstance(objective, fixmatch.FixMatch):  # the labelled clips alone
    x = x[fixmatch.CLIPS]
  y = np.array([0, 1] * 4, np.float32)[:, None]
  config = ViViTConfig.from_dict(CONV).replace(accumulation_steps=k, learning_rate=0.1,
                                               weight_decay=0.0, warmup_steps=0)
  model = one_step_from_the_same_start(config, devices, x, y, objective)
  assert int(model.optimizer.iterations.numpy()) == 1
  return ([v.numpy() for v in model.variables],
          {n: v[-1] for n, v in model.history.history.items()})


@pytest.mark.parametrize('k', [1, 2])
def test_one_fixmatch_step_on_two_replicas_equals_one_step_on_one_device(k):
  """Each replica takes half of the labelled and half of the unlabelled clips; the update is
  the one-device update (the replicas' mean gradient), accumulation included."""
  one, logs = _one_step(fixmatch.FixMatch(0.5, 1.0), ['/cpu:0'], k)
  two, logs_two = _one_step(fixmatch.FixMatch(0.5, 1.0), ['/cpu:0', '/cpu:1'], k)
  assert logs['unlabelled_kept'] == logs_two['unlabelled_kept'] == 1.0  # threshold 0.5: all
  for a, b in zip(one, two):  # Adam's first step moves a weight by up to 0.1
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_unsure_clips_leave_the_labelled_step_unchanged_and_sure_ones_move_it():
  labelled, _ = _one_step(training.Supervised(), ['/cpu:0'])
  unsure, logs = _one_step(fixmatch.FixMatch(1.01, 1.0), ['/cpu:0'])  # none is sure
  sure, _ = _one_step(fixmatch.FixMatch(0.5, 1.0), ['/cpu:0'])
  assert logs['unlabelled_kept'] == 0.0
  for a, b in zip(labelled, unsure):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert max(np.abs(a - b).max() for a, b in zip(labelled, sure)) > 1e-3


def test_unlabelled_batches_hold_a_weak_and_a_strong_view_of_the_same_clips():
  clips = tf.random.normal([6, 4, 8, 8, 3], seed=2)
  weak, strong = fixmatch.views(SelfTrainingConfig('fixmatch', strong_crop=1.0,
                                                        strong_noise=0.3))(clips)
  assert weak.shape == strong.shape == clips.shape
  # No crop at 1.0: the strong view is the (maybe flipped) clip plus photometric noise.
  flipped = tf.reverse(clips, axis=[3])
  near = [min(float(tf.reduce_mean(tf.abs(strong[i] - c[i]))) for c in (clips, flipped))
          for i in range(6)]
  assert 0.05 < min(near) and max(near) < 0.6
  labelled = tf.data.Dataset.from_tensors((clips[:2], tf.zeros([2, 1]))).repeat()
  unlabelled = tf.data.Dataset.from_tensors((weak, strong)).repeat()
  x, y = next(iter(fixmatch.batches(labelled, unlabelled)))
  assert x[fixmatch.CLIPS].shape[0] == 2 and x[fixmatch.STRONG].shape[0] == 6
  assert y.shape == (2, 1)


def test_fixmatch_keeps_the_labelled_budget_and_pseudo_labels_stay_the_default(tmp_path):
  plain = configs.PipelineConfig(output_root=str(tmp_path))
  pseudo = plain.replace(unlabeled_videos=str(tmp_path))
  assert pseudo.self_training_config().method == 'pseudo_labels'
  assert pseudo.self_training_config().threshold == 0.9
  assert pseudo.train_steps_for(200) == 3200
  footage = pseudo.replace(self_training_overrides='{"method": "fixmatch"}')
  assert footage.self_training_config().threshold == 0.95
  assert footage.train_steps_for(200) == plain.train_steps_for(200) == 1600
  assert 'fixmatch (threshold 0.95, unlabeled_ratio 1' in footage.training_summary()
  assert 'teacher_fraction' not in footage.training_summary()
  for config in (footage, pseudo):  # what the Trainer gets back from its custom_config
    plan = config.self_training_config()
    assert SelfTrainingConfig.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize('settings, message', [
    ({'method': 'fixmatch', 'teacher_fraction': 0.3}, "do not apply to method 'fixmatch'"),
    ({'strong_noise': 0.2}, "do not apply to method 'pseudo_labels'"),
    ({'method': 'fixmatch', 'unlabeled_ratio': 1.5}, 'unlabeled_ratio'),
    ({'method': 'fixmatch', 'strong_crop': 0}, 'strong_crop'),
    ({'method': 'mixmatch'}, 'method')])
def test_bad_fixmatch_settings_are_refused_before_any_data(tmp_path, settings, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.PipelineConfig(output_root=str(tmp_path), unlabeled_videos=str(tmp_path),
                           self_training_overrides=json.dumps(settings)).validate()


def test_run_fn_trains_with_fixmatch_on_two_replicas(tmp_path):
  with tf.io.TFRecordWriter(str(tmp_path / 'u.tfrecord')) as writer:
    for record in export.synthetic_examples(4, (16, 16), count=6):
      writer.write(record)
  custom = {'vivit': CONV, 'train_steps': 4, 'distribution': 'mirrored',
            'self_training': {'method': 'fixmatch', 'threshold': 0.5, 'unlabeled_ratio': 2},
            'unlabeled': {'pattern': str(tmp_path / '*.tfrecord'), 'videos': 6,
                          'labelled_videos': 8}}
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'run_fn_harness.py'), str(tmp_path),
       json.dumps(custom), '2'], capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert run.returncode == 0, run.stderr[-3000:]
  assert ('Trainer: FixMatch on 6 unlabelled videos: 8 unlabelled clips per step, '
          'pseudo-labels at probability ≥ 0.5') in run.stdout
  assert 'unlabelled_kept: 1.0000' in run.stdout  # threshold 0.5: every clip counts
  assert 'ITERATIONS 4 STRATEGY MirroredStrategy 2' in run.stdout
  assert 'DONE 0' in run.stdout
