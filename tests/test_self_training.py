"""Self-training with pseudo-labels on unlabelled footage (models/trainer/self_training.py,
method 'pseudo_labels', the default; FixMatch is tests/test_fixmatch.py): which videos get a
pseudo-label, and the Trainer's run_fn with a teacher phase, pseudo-labels and a student phase
on two mirrored replicas, resumed after a kill with the same pseudo-labels."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.trainer import export, self_training
from vivit_tfx.models.trainer.self_training import SelfTrainingConfig
from vivit_tfx.pipeline import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV = {'num_frames': 4, 'image_size': [16, 16], 'tokenizer': 'conv', 'conv_widths': [4, 8],
        'conv_strides': [[1, 2, 2], [1, 2, 2], [2, 1, 1]], 'hidden_size': 16, 'num_layers': 1,
        'num_heads': 2, 'mlp_dim': 32, 'batch_size': 2, 'checkpoint_steps': 2}


def test_probabilities_of_binary_and_multiclass_logits():
  np.testing.assert_allclose(self_training.probabilities(np.array([[0.0], [np.log(3)]])),
                             [[0.5, 0.5], [0.25, 0.75]])
  p = self_training.probabilities(np.array([[1.0, 1.0, 1.0]]))
  np.testing.assert_allclose(p, [[1 / 3] * 3])


def test_choose_keeps_the_confident_most_confident_first_capped_per_class():
  probs = self_training.probabilities(np.array([[3.0], [-4.0], [0.5], [5.0], [2.5], [-2.4]]))
  config = SelfTrainingConfig(threshold=0.9, max_ratio=1.0)
  chosen, labels = self_training.choose(probs, labelled_per_class=2, config=config)
  # p(violent) = .95, .02, .62, .99, .92, .08: video 2 is unsure; class 1 holds three sure
  # videos, of which the cap keeps the two most confident (3 and 0).
  assert chosen.tolist() == [0, 1, 3, 5] and labels.tolist() == [1, 0, 1, 0]
  capped, _ = self_training.choose(probs, labelled_per_class=1, config=config)
  assert capped.tolist() == [1, 3]  # one per class: the most confident of each


@pytest.mark.parametrize('settings, message', [
    ({'threshold': 0.3}, 'threshold'),
    ({'method': 'pseudo_labels', 'teacher_fraction': 1}, 'teacher_fraction must be within'),
    ({'method': 'pseudo_labels', 'pseudo_share': 0}, 'pseudo_share must be within'),
    ({'method': 'pseudo_labels', 'student_noise': 1.5}, 'student_noise must be within'),
    ({'student_start': 'scratch'}, 'student_start must be one of'),
    ({'method': 'fixmatch', 'student_start': 'initial'}, 'do not apply to method'),
    ({'ratio': 2}, 'unknown self-training')])
def test_bad_settings_are_refused_before_any_data(tmp_path, settings, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.PipelineConfig(output_root=str(tmp_path), unlabeled_videos=str(tmp_path),
                           self_training_overrides=json.dumps(settings)).validate()


def test_the_student_restarts_from_a_pretrained_encoder_by_default_and_only_when_asked_otherwise():
  """'auto': from the pre-trained encoder under --pretrain (measured better at 100 labels),
  from the teacher otherwise (a fresh initialisation was not measured); FixMatch has no
  student."""
  auto = SelfTrainingConfig()
  assert auto.restarts_student(pretrained=True) and not auto.restarts_student(pretrained=False)
  assert SelfTrainingConfig(student_start='initial').restarts_student(pretrained=False)
  assert not SelfTrainingConfig(student_start='teacher').restarts_student(pretrained=True)
  assert not SelfTrainingConfig(method='fixmatch').restarts_student(pretrained=True)


def test_a_student_from_the_initial_weights_gets_them_back_and_a_fresh_optimizer():
  """student_start 'initial': the weights taken before the teacher trained, the AdamW moments
  at zero, and the step counter (the learning-rate cycles') where the teacher left it."""
  import keras
  from vivit_tfx.models.trainer import training
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  model.compile(optimizer=training.ReplicaMeanAdamW(learning_rate=0.1), loss='mse')
  initial = model.get_weights()
  model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=3, verbose=0)  # the teacher
  opt = model.optimizer
  moments = [v for v in opt.variables if v.path.endswith(('_momentum', '_velocity'))]
  assert len(moments) == 4 and not np.allclose(model.get_weights()[0], initial[0])
  assert all(np.abs(v.numpy()).max() > 0 for v in moments)
  self_training.restart_student(model, initial)
  for now, then in zip(model.get_weights(), initial):
    np.testing.assert_array_equal(now, then)
  assert int(opt.iterations) == 3
  assert all(np.abs(v.numpy()).max() == 0 for v in moments)
  assert float(opt.learning_rate) == pytest.approx(0.1)  # a fixed rate is kept


def test_the_student_batches_are_noised_photometrically_and_only_when_asked():
  clips = tf.random.normal([6, 4, 8, 8, 3], seed=1)
  labelled = tf.data.Dataset.from_tensors((clips, tf.zeros([6, 1]))).repeat()
  pseudo = tf.data.Dataset.from_tensors((clips, tf.ones([6, 1]))).repeat()
  for x, _ in self_training.mixed(labelled, pseudo, 0.5).take(2):
    np.testing.assert_array_equal(x.numpy(), clips.numpy())
  noisy = [x.numpy() for x, _ in self_training.mixed(labelled, pseudo, 0.5, noise=0.3).take(4)]
  change = noisy[0] - clips.numpy()  # [B, T, H, W, C]
  assert 0.05 < change.std() < 0.6
  # The same brightness and contrast for all of a clip's frames, another for each clip; the
  # pixel noise differs frame to frame.
  per_clip = change.mean(axis=(1, 2, 3, 4))
  assert np.ptp(per_clip) > 0.05
  assert np.abs(change.mean(axis=(2, 3, 4)) - per_clip[:, None]).max() < 0.1
  assert not np.allclose(noisy[0][:, 1] - noisy[0][:, 0], clips.numpy()[:, 1] - clips.numpy()[:, 0])


def test_teacher_and_student_each_get_a_learning_rate_cycle():
  """The teacher that labels must be a converged model (its learning rate decayed to 0), and
  the student must learn afresh (a new warm-up): one cosine over the whole run left the
  teacher half-trained and sure of 1 of 800 unlabelled videos on the hard benchmark."""
  from vivit_tfx.models.trainer import training  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.network.vivit_config import ViViTConfig  # pylint: disable=g-import-not-at-top
  cycles = SelfTrainingConfig(method='pseudo_labels', teacher_fraction=0.5).cycles(1000)
  assert cycles == (500, 500)
  assert SelfTrainingConfig(method='fixmatch').cycles(1000) == ()  # one cycle
  rate = training.learning_rate_schedule(ViViTConfig(learning_rate=1e-3, warmup_steps=100),
                                         1000, cycles)
  at = lambda step: float(rate(tf.constant(step)))
  assert at(100) == pytest.approx(1e-3) and at(499) < 1e-6  # the teacher's cycle ends at 0
  assert at(550) == pytest.approx(5e-4) and at(600) == pytest.approx(1e-3)  # warm restart
  assert at(999) < 1e-6


def test_the_default_budget_gives_the_teacher_what_the_labels_alone_get(tmp_path):
  """--train-steps 0: the teacher gets the labelled data's steps, the student its share on
  top; an explicit --train-steps is the whole run's."""
  plain = configs.PipelineConfig(output_root=str(tmp_path))
  unlabeled = plain.replace(unlabeled_videos=str(tmp_path),
                            self_training_overrides='{"method": "pseudo_labels"}')
  assert plain.train_steps_for(200) == configs.auto_train_steps(200) == 1600
  assert unlabeled.train_steps_for(200) == 3200
  assert unlabeled.replace(train_steps=700).train_steps_for(200) == 700
  # Pre-training, then pseudo-labels (the default use of the footage): the teacher's steps
  # again for the pre-training, teacher and student after it.
  pretrain = unlabeled.replace(pretrain=True)
  assert pretrain.self_training() and not pretrain.pretrain_footage()
  assert pretrain.train_steps_for(200) == 3200 and pretrain.pretrain_steps_for(200) == 1600
  # --train-steps is the whole run's: the pre-training gets its teacher's share (as the
  # default does), FixMatch's run all of it.
  assert pretrain.replace(train_steps=700).pretrain_steps_for(200) == 350
  assert pretrain.replace(self_training_overrides='{"method": "fixmatch"}',
                          train_steps=700).pretrain_steps_for(200) == 700
  assert pretrain.replace(pretrain_steps=300).pretrain_steps_for(200) == 300
  summary = pretrain.training_summary()
  assert ('as many masked-autoencoder pre-training steps on the train split; pseudo_labels'
          in summary), summary
  # The footage in the pre-training instead: no student.
  footage = pretrain.replace(unlabeled_use='pretraining')
  assert footage.pretrain_footage() and not footage.self_training()
  assert footage.train_steps_for(200) == footage.pretrain_steps_for(200) == 1600
  assert f'on {tmp_path} and the train split' in footage.training_summary()


def test_the_footage_goes_where_unlabeled_use_says(clips_dir, tmp_path):
  """--pretrain --unlabeled-videos: by default the PretrainTrainer reads the train split alone
  and the Trainer self-trains on the footage; --unlabeled-use pretraining gives the footage to
  the PretrainTrainer and none to the Trainer; without --pretrain it is refused."""
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import pipeline  # pylint: disable=g-import-not-at-top
  # The labelled clips stand in for ingested footage: the wiring reads its summary alone.
  config = tiny_config(clips_dir, tmp_path, pretrain=True, unlabeled_videos=str(tmp_path),
                       unlabeled_clips_dir=clips_dir)

  def custom(config, component):
    nodes = {c.id: c for c in pipeline.create_pipeline(config).components}
    return json.loads(nodes[component].exec_properties['custom_config'])

  pattern = os.path.join(clips_dir, 'train', '*.tfrecord')
  assert custom(config, 'PretrainTrainer')['unlabeled'] == {}
  trainer = custom(config, 'Trainer')
  assert trainer['unlabeled']['pattern'] == pattern and 'self_training' in trainer
  footage = config.replace(unlabeled_use='pretraining')
  assert custom(footage, 'PretrainTrainer')['unlabeled']['pattern'] == pattern
  assert 'unlabeled' not in custom(footage, 'Trainer')
  with pytest.raises(configs.ConfigError, match='--unlabeled-use pretraining needs --pretrain'):
    footage.replace(pretrain=False).validate()
  with pytest.raises(configs.ConfigError, match='do not apply with --unlabeled-use pretraining'):
    footage.replace(self_training_overrides='{"threshold": 0.8}').validate()


def _run(tmp_path, kill: str, **settings):
  unlabeled = tmp_path / 'unlabeled'
  unlabeled.mkdir(exist_ok=True)
  with tf.io.TFRecordWriter(str(unlabeled / 'u.tfrecord')) as writer:
    for record in export.synthetic_examples(4, (16, 16), count=6):
      writer.write(record)
  custom = {'vivit': CONV, 'train_steps': 6, 'distribution': 'mirrored',
            'self_training': {'method': 'pseudo_labels', 'threshold': 0.5,
                              'teacher_fraction': 0.5, **settings},
            'unlabeled': {'pattern': str(unlabeled / '*.tfrecord'), 'videos': 6,
                          'labelled_videos': 8}}
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'run_fn_harness.py'), str(tmp_path),
       json.dumps(custom), '2'], capture_output=True, text=True, timeout=300,
      env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3',
           'HARNESS_MODEL_RUN': str(tmp_path / 'Trainer' / 'model_run' / '5'),
           'HARNESS_KILL': kill, 'HARNESS_KILL_AFTER': '4'})


def test_run_fn_self_trains_on_two_replicas_and_resumes_with_the_same_pseudo_labels(tmp_path):
  """Teacher for 3 of 6 steps, every unlabelled video pseudo-labelled (threshold 0.5), then
  the student; killed at its first checkpoint after the teacher (step 4), the next run
  reuses the pseudo-labels and trains exactly the 6 steps."""
  killed = _run(tmp_path, '1')
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert 'Trainer: self-training: 3 teacher steps on the labels' in killed.stdout
  assert 'Trainer: pseudo-labelled 6 of 6 unlabelled videos at probability ≥ 0.5' in (
      killed.stdout)
  again = _run(tmp_path, '0')
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'reusing the 6 pseudo-labelled videos of the killed run' in again.stdout
  assert 'Trainer: resumed from step 4 of 6' in again.stdout
  assert 'ITERATIONS 6 STRATEGY MirroredStrategy 2' in again.stdout
  assert 'DONE 0' in again.stdout
  record = json.loads((tmp_path / 'Trainer' / 'model_run' / '5' / 'pseudo_labels.json')
                      .read_text())  # kept with the run: which videos, which class, how sure
  assert record['chosen'] == 6 and len(record['videos']) == 6
  # One row per video, not per replica; a run given no class names has the RLVS layout's
  # (ModelClipConfig's default, what its export writes).
  assert set(record['per_class']) == {'NonViolence', 'Violence'}
  assert {v['label'] for v in record['videos']} <= {'NonViolence', 'Violence'}
  assert all(0.5 <= v['probability'] <= 1 for v in record['videos'])


def test_run_fn_starts_the_student_from_the_initial_weights_on_two_replicas(tmp_path):
  """student_start 'initial' under MirroredStrategy: after the teacher's 3 steps and the
  pseudo-labels the weights and optimizer are reset (mirrored variables assigned in the
  cross-replica context), and the student trains the run's remaining 3 steps."""
  run = _run(tmp_path, '0', student_start='initial')
  assert run.returncode == 0, run.stderr[-2000:]
  assert "Trainer: the student starts from the run's initial weights (a fresh " in run.stdout
  assert 'ITERATIONS 6 STRATEGY MirroredStrategy 2' in run.stdout
  assert 'DONE 0' in run.stdout
