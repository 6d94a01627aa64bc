"""Training recipe: mixed precision, XLA and accumulation under MirroredStrategy (one device, and
run_fn over two logical CPUs), gradient accumulation, resume
after a kill, independent stochastic-depth masks, Model 4's
factorised dot-product attention, presets that carry their clip and recipe."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import EncoderBlock
from vivit_tfx.models.network.vivit_config import ViViTConfig, preset
from vivit_tfx.models.trainer import training
from vivit_tfx.pipeline import configs
from tests.conftest import one_step_from_the_same_start

TINY = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, 8, 8), hidden_size=16,
                   num_layers=1, num_temporal_layers=1, num_heads=2, mlp_dim=32,
                   warmup_steps=0, learning_rate=1e-2, weight_decay=0.05)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.random((n, 4, 16, 16, 3)).astype(np.float32), np.array([0, 1] * (n // 2))


@pytest.mark.parametrize('precision,variant', [('mixed_bfloat16', 'factorised_dot_product'),
                                               ('mixed_float16', 'spatiotemporal')])
def test_mixed_precision_trains_with_float32_logits(precision, variant):
  keras.utils.set_random_seed(0)
  config = TINY.replace(precision=precision, variant=variant)
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=4)
  x, y = data()
  history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
  assert all(np.isfinite(history.history['loss']))
  assert model(x).dtype == 'float32'
  assert model.encoder.blocks[0].mlp_in.compute_dtype == precision.split('_')[1]  # bfloat16…
  assert model.encoder.blocks[0].mlp_in.kernel.dtype == 'float32'
  is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
  assert is_scaled == (precision == 'mixed_float16')


def test_bfloat16_becomes_float16_on_gpus_without_bfloat16():
  t4, a100 = ('Tesla T4', (7, 5)), ('NVIDIA A100-SXM4-80GB', (8, 0))
  precision, note = training.precision_for('mixed_bfloat16', [t4])
  assert precision == 'mixed_float16'
  assert note == ('Tesla T4 (compute capability 7.5) has no bfloat16: training in '
                  'mixed_float16 with dynamic loss scaling')
  assert training.precision_for('mixed_bfloat16', [a100]) == ('mixed_bfloat16', '')
  assert training.precision_for('mixed_bfloat16', []) == ('mixed_bfloat16', '')  # CPU, TPU
  assert training.precision_for('float32', [t4]) == ('float32', '')


@pytest.mark.parametrize('run_fn_module', ['trainer.model', 'videomae.pretrain_model'])
def test_both_trainers_take_the_machines_precision(monkeypatch, capsys, run_fn_module):
  """The fine-tuning and the pre-training run_fn resolve the precision with the same rule."""
  import importlib  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(training, 'visible_gpus', lambda: [('Tesla T4', (7, 5))])
  config = training.precision_for_this_machine(TINY.replace(precision='mixed_bfloat16'), 'Who')
  assert config.precision == 'mixed_float16'
  assert capsys.readouterr().out.startswith('Who: Tesla T4 (compute capability 7.5)')
  source = importlib.import_module(f'vivit_tfx.models.{run_fn_module}').run_fn
  assert 'precision_for_this_machine' in source.__code__.co_names


def test_xla_accumulation_and_bf16_under_mirrored_strategy_train():
  keras.utils.set_random_seed(0)
  config = TINY.replace(jit_compile=True, stochastic_depth=0.2, accumulation_steps=2,
                        clipnorm=1.0, precision='mixed_bfloat16')  # the ViT presets' recipe
  with tf.distribute.MirroredStrategy(['/cpu:0']).scope():
    model = initialised_vivit(config)
    training.compile_model(model, config, total_steps=4)
  assert model.jit_compile is True  # Keras's 'auto' would be False under a strategy
  x, y = data()
  first = model.evaluate(x, y, verbose=0)[0]
  model.fit(x, y, batch_size=8, epochs=4, verbose=0)  # 4 steps of 2 micro-batches of 4
  assert int(model.optimizer.iterations.numpy()) == 4
  assert np.isfinite(first) and model.evaluate(x, y, verbose=0)[0] < first


def test_vit_preset_recipe_trains_run_fn_on_two_mirrored_replicas(tmp_path):
  """CI's rehearsal of a two-GPU machine: run_fn with vivit-b-16x2's recipe (8 accumulation
  steps, AdamW decay, clipping, bfloat16) at tiny dimensions, MirroredStrategy over two
  logical CPU devices. XLA stays off here: XLA on CPU places every logical device's
  computation on CPU:0 ("Trying to access resource … located in device CPU:1")."""
  recipe = preset('vivit-b-16x2').recipe.__dict__
  vivit = {**recipe, **TINY.architecture.__dict__, 'batch_size': 1, 'jit_compile': False}
  assert vivit['accumulation_steps'] == 8 and vivit['precision'] == 'mixed_bfloat16'
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'run_fn_harness.py'), str(tmp_path),
       json.dumps({'vivit': vivit, 'distribution': 'mirrored', 'train_steps': 3}), '2'],
      env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'},
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  # 3 updates exactly (epochs of 2 and 1), 2 replicas
  assert 'ITERATIONS 3 STRATEGY MirroredStrategy 2' in run.stdout
  assert 'with 2 replica(s): 16 clips per step (8 accumulation step(s) of 2)' in run.stdout
  assert (tmp_path / 'serving_0' / 'saved_model.pb').exists()


def test_pretraining_run_fn_trains_on_two_mirrored_replicas(tmp_path):
  """The PretrainTrainer takes the Trainer's strategy: VideoMAE pre-training under
  MirroredStrategy over two logical CPU devices, 2 clips per replica, exactly 3 updates, and
  the pre-trained directory the fine-tuning Trainer reads (its encoder weights)."""
  vivit = {**TINY.__dict__, 'batch_size': 2, 'jit_compile': False}
  vivit['image_size'] = list(vivit['image_size'])
  pretrain = {'batch_size': 2, 'decoder_hidden_size': 16, 'decoder_num_layers': 1,
              'decoder_num_heads': 2, 'decoder_mlp_dim': 32, 'warmup_steps': 0}
  run = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'run_fn_harness.py'), str(tmp_path),
       json.dumps({'vivit': vivit, 'pretrain': pretrain, 'distribution': 'mirrored',
                   'train_steps': 3}, default=list), '2'],
      env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'},
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'ITERATIONS 3 STRATEGY MirroredStrategy 2' in run.stdout
  assert ('PretrainTrainer: VideoMAE on MirroredStrategy with 2 replica(s): 4 clips per step'
          in run.stdout)
  saved = os.listdir(tmp_path / 'serving_0')
  assert 'encoder.weights.h5' in saved and 'history.json' in saved, saved


def test_k_accumulation_steps_equal_one_step_of_k_times_the_batch():
  x, y = data(8, seed=3)
  weights = []
  for k in (1, 4):  # one batch of 8 = 4 micro-batches of 2
    keras.utils.set_random_seed(1)
    config = TINY.replace(accumulation_steps=k, clipnorm=1.0)
    model = initialised_vivit(config)
    for v in model.trainable_variables:  # same non-trivial start (the head starts at zero)
      v.assign(np.random.default_rng(7).normal(0, 0.2, v.shape).astype(np.float32))
    training.compile_model(model, config, total_steps=100_000)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 1  # one update
    weights.append([v.numpy() for v in model.trainable_variables])
  start = np.random.default_rng(7)
  moved = False
  for a, b in zip(*weights):
    np.testing.assert_allclose(a, b, atol=2e-5)
    moved |= not np.allclose(a, start.normal(0, 0.2, a.shape), atol=1e-4)
  assert moved


@pytest.mark.parametrize('k, clipnorm', [(1, 0.05), (2, 0.05), (2, 0.0)])
def test_one_step_on_two_replicas_equals_one_step_on_one_device(k, clipnorm, monkeypatch):
  """Same global batch, same start: the update on two mirrored replicas equals the one-device
  update, clipping included (Keras 3.6 alone sums the replicas' gradients: 2x, clipped per
  replica), and the gradients cross devices once per update (one all-reduce per replica).
  Unclipped, Adam's first moment shows the gradient's scale (a sum would be 2x)."""
  all_reduce, calls = tf.distribute.ReplicaContext.all_reduce, []
  monkeypatch.setattr(tf.distribute.ReplicaContext, 'all_reduce', lambda self, *a, **kw: (
      calls.append(a[0]), all_reduce(self, *a, **kw))[1])
  x, y = data(8, seed=5)
  weights, moments = [], []
  for devices in (['/cpu:0'], ['/cpu:0', '/cpu:1']):
    config = TINY.replace(accumulation_steps=k, clipnorm=clipnorm, learning_rate=0.1,
                          weight_decay=0.0)
    model = one_step_from_the_same_start(config, devices, x, y)
    assert int(model.optimizer.iterations.numpy()) == 1
    weights.append([v.numpy() for v in model.trainable_variables])
    moments.append([m.numpy() for m in model.optimizer._momentums])  # pylint: disable=protected-access
  for a, b in zip(*weights):  # Adam's first step is about lr * sign(g): 1e-5 of 0.1
    np.testing.assert_allclose(a, b, atol=1e-5)
  for a, b in zip(*moments):  # (1 - beta_1) * the clipped gradient: its scale shows here
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max() + 1e-12)
  assert len(calls) == 2, calls  # the train step, traced once on each of the two replicas


def test_keras_default_step_under_two_replicas_is_refused():
  """The optimizers skip Keras's all-reduce (the gradients come averaged): Keras's own train
  step under two replicas would apply each replica's gradient to its copy, unaveraged."""
  x, y = data(8)
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'], cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = initialised_vivit(TINY)
    model.compile(optimizer=training.optimizer(TINY, model, 10), loss='mse')
  with pytest.raises(RuntimeError, match='already averaged over the replicas'):
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_training_checkpoint_round_trip_on_ram_filesystem():
  config = TINY
  x, y = data()
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=4)
  checkpoint = training.TrainingCheckpoint(model, 'ram://recipe_test/checkpoints', every=2)
  assert training.fit_resumable(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
                                .repeat(), 2, 4, checkpoint) == 4
  assert tf.io.gfile.glob('ram://recipe_test/checkpoints/ckpt-4*')
  again = initialised_vivit(config)
  training.compile_model(again, config, total_steps=4)
  assert training.TrainingCheckpoint(again, 'ram://recipe_test/checkpoints', 2).restore() == 4
  np.testing.assert_allclose(again(x), model(x), atol=1e-6)
  assert int(again.optimizer.iterations) == 4


def test_train_steps_run_exactly_and_eval_steps_batches_validate_every_epoch():
  # Both Trainers (fine-tuning, pre-training) budget their steps so.
  assert training.step_budget(1000, 300) == (1000, 300) and training.step_budget(2, 3) == (2, 2)
  assert training.epoch_plan(0, 1000, 300) == [300, 300, 300, 100]  # 1000, not 900
  assert training.epoch_plan(450, 1000, 300) == [150, 300, 100]  # resumed mid-epoch
  x, y = data()
  model = initialised_vivit(TINY)
  training.compile_model(model, TINY, total_steps=5)

  class Count(keras.callbacks.Callback):
    validation_batches = 0

    def on_test_batch_end(self, batch, logs=None):
      Count.validation_batches += 1

  checkpoint = training.TrainingCheckpoint(model, 'ram://exact_steps/checkpoints', every=100)
  evaluation = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).repeat()
  assert training.fit_resumable(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
                                .repeat(), 2, 5, checkpoint, validation_data=evaluation,
                                validation_steps=2, callbacks=[Count()]) == 5
  assert int(model.optimizer.iterations) == 5
  assert Count.validation_batches == 3 * 2  # epochs of 2, 2 and 1 steps, 2 batches each


def _killed_then_run_again(tmp_path, component: str, custom: dict, stale: bool = False,
                           logical_cpus: int = 1):
  """run_fn killed after its first checkpoint, its execution's folders removed by the next
  run's clean-up (run_guard), then run again (a new execution, same inputs): the second run's
  result. `stale`: a killed job of other settings left a checkpoint folder in between."""
  from vivit_tfx.pipeline import run_guard  # pylint: disable=g-import-not-at-top
  runs = []
  for execution, kill in ((7, '1'), (8, '0')):
    model_run = tmp_path / 'root' / component / 'model_run' / str(execution)
    runs.append(subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tests', 'run_fn_harness.py'), str(tmp_path),
         json.dumps(custom), str(logical_cpus)], capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3',
             'HARNESS_MODEL_RUN': str(model_run), 'HARNESS_KILL': kill}))
    if kill == '1':
      assert runs[-1].returncode == -9, runs[-1].stderr[-2000:]
      assert run_guard._remove_outputs(str(tmp_path / 'root'), component, execution)  # pylint: disable=protected-access
      if stale:
        folder = tmp_path / 'root' / component / 'model_run' / 'resume' / 'other-settings'
        folder.mkdir()
        (folder / 'ckpt-2.index').write_text('x')
  assert runs[-1].returncode == 0, runs[-1].stderr[-2000:]
  return runs[-1]


@pytest.mark.parametrize('distribution, devices', [('default', 1), ('mirrored', 2)])
def test_trainer_killed_after_a_checkpoint_resumes_in_the_next_execution(tmp_path, distribution,
                                                                         devices):
  """A run killed during training and started again (a new execution, same inputs):
  training resumes, also on two mirrored replicas (the restore built the optimizer's slots
  outside the strategy's scope: "Need to be inside with strategy.scope()"); a checkpoint
  folder of other settings is kept, and said."""
  run = _killed_then_run_again(tmp_path, 'Trainer', {
      'vivit': {**TINY.architecture.__dict__, 'batch_size': 2, 'checkpoint_steps': 2},
      'train_steps': 4, 'distribution': distribution}, stale=True, logical_cpus=devices)
  assert 'Trainer: resumed from step 2 of 4' in run.stdout
  assert f'ITERATIONS 4 STRATEGY {"MirroredStrategy 2" if devices == 2 else ""}' in run.stdout
  resume = tmp_path / 'root' / 'Trainer' / 'model_run' / 'resume'
  assert os.listdir(resume) == ['other-settings']  # its own folder removed once exported
  assert (f'Trainer: 1 checkpoint folder(s) of killed jobs with other inputs or settings kept '
          f'for a resume in {resume}') in run.stdout


def test_pretrainer_killed_after_a_checkpoint_resumes_in_the_next_execution(tmp_path):
  """VideoMAE pre-training keeps its checkpoints where a killed run's clean-up leaves them,
  as the Trainer does: started again, it resumes, and removes them once saved; its loss
  history numbers the steps it ran as the run's (it started again at 1)."""
  vivit = {**TINY.__dict__, 'batch_size': 2, 'image_size': list(TINY.image_size)}
  run = _killed_then_run_again(tmp_path, 'PretrainTrainer', {
      'vivit': vivit, 'train_steps': 4, 'pretrain': {
          'batch_size': 2, 'decoder_hidden_size': 16, 'decoder_num_layers': 1,
          'decoder_num_heads': 2, 'decoder_mlp_dim': 32}})
  assert 'PretrainTrainer: resumed from step 2 of 4' in run.stdout
  assert 'ITERATIONS 4' in run.stdout  # 2 restored + 2 trained
  assert not os.listdir(tmp_path / 'root' / 'PretrainTrainer' / 'model_run' / 'resume')
  with open(tmp_path / 'serving_0' / 'history.json') as f:  # the loss plot's x axis
    assert json.load(f)['step'] == [3, 4]  # the run's steps, not 1, 2 again


def test_stochastic_depth_masks_differ_between_layers():
  model = initialised_vivit(TINY.replace(stochastic_depth=0.9, num_layers=4))
  ones = tf.ones((512, 3, 16))
  low, high = (model.encoder.blocks[i].drop_branch(ones, training=True).numpy()[:, 0, 0] > 0
               for i in (1, 3))  # drop rates 0.45 and 0.9
  assert 0 < high.sum() < low.sum() < 512
  # One shared random stream would nest the masks (kept at 0.9 ⇒ kept at 0.45).
  assert (high & ~low).any()


def test_model4_heads_attend_within_a_frame_or_a_position():
  n_t, n_s, d = 3, 4, 16
  block = EncoderBlock(d, 4, 32, dot_product_grid=(n_t, n_s))
  x = np.random.default_rng(0).normal(size=(1, n_t * n_s, d)).astype(np.float32)
  block.build(x.shape)
  # Only the attention part: an MLP acts per token, so the mixing pattern is the attention's.
  poked = x.copy()
  poked[0, 1 * n_s + 2, 0] += 1.0  # frame 1, position 2 (one feature: LayerNorm keeps it)
  changed = np.abs(block(poked).numpy() - block(x).numpy()).sum(-1)[0] > 1e-4
  for i in range(n_t * n_s):
    same_frame, same_position = i // n_s == 1, i % n_s == 2
    assert changed[i] == (same_frame or same_position), i
  model = initialised_vivit(TINY.replace(variant='factorised_dot_product'))
  assert model.count_params() == initialised_vivit(TINY).count_params()  # as Model 1 (paper)


def test_preset_recipe_applies_unless_a_flag_overrides_it():
  config = configs.PipelineConfig(preset='vivit-b-16x2').resolve()
  model = config.vivit_config()
  assert (config.num_frames, config.image_size, config.frame_size) == (32, (224, 224), (224, 224))
  assert (model.batch_size, model.learning_rate, model.precision) == (8, 1e-4, 'mixed_bfloat16')
  assert model.jit_compile and model.accumulation_steps == 8 and model.clipnorm == 1.0
  flagged = configs.PipelineConfig(preset='vivit-b-16x2', num_frames=16, batch_size=4).resolve()
  assert (flagged.num_frames, flagged.batch_size, flagged.image_size) == (16, 4, (224, 224))
  assert flagged.vivit_config().learning_rate == 1e-4
  tiny = flagged.replace(preset='vivit-tiny')  # the flags stay, the rest follows the preset
  assert (tiny.num_frames, tiny.batch_size, tiny.image_size) == (16, 4, (64, 64))
  assert 'recipe: learning_rate=0.0001' in config.model_summary()
  assert set(model.to_dict()) == set(model.architecture.__dict__) | set(model.recipe.__dict__)


def test_init_checkpoint_reaches_the_trainer_and_a_missing_one_stops_run(tmp_path, capsys):
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config = configs.PipelineConfig(output_root=str(tmp_path / 'out'), init_checkpoint='vit.npz')
  trainer = [c for c in pipeline.create_pipeline(config).components
             if c.id == 'Trainer'][0]
  vivit = trainer.exec_properties['custom_config']
  assert '"init_checkpoint": "' + os.path.abspath('vit.npz') in str(vivit)
  assert config.vivit_config().kernel_init == 'central_frame'  # default with a checkpoint
  rc = cli.main(['run', '--init-checkpoint', str(tmp_path / 'absent.npz'),
                 '--output-root', str(tmp_path / 'out2')])
  err = capsys.readouterr().err
  assert rc == 1 and 'absent.npz: no such file' in err and len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'out2')


def test_bench_train_runs_the_preset_recipe_and_names_its_strategy(capsys):
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  tiny = json.dumps({**TINY.architecture.__dict__, 'image_size': [32, 32]})
  assert cli.main(['bench', 'train', '--preset', 'vivit-b-16x2', '--frames', '4',
                   '--image-size', '32', '--batch-size', '1', '--precision', 'float32',
                   '--jit-compile', 'false', '--steps', '1', '--warmup', '1',
                   '--vivit-overrides', tiny]) == 0
  row = [c.strip() for c in capsys.readouterr().out.strip().splitlines()[-1].split('|')]
  assert row[1] == 'vivit-b-16x2' and row[3] == 'finetune' and row[4] == '4x32'
  assert float(row[10]) > 0
  assert row[7] == 'DefaultDistributionStrategy x1'
  assert row[8] == '8 (8)'  # 8 micro-batches of 1 clip: the preset's accumulation


def test_bench_train_pretrains_at_the_pipelines_mask_ratio(monkeypatch):
  """`bench train --objective pretrain` times the step the pipeline runs: through a conv
  tokenizer 0.75 of the tubelets hidden (it timed 0.9 for every preset), else VideoMAE's 0.9;
  --mask-ratio still decides."""
  from vivit_tfx.bench import train_bench  # pylint: disable=g-import-not-at-top
  seen = []

  def timed(config, steps, warmup, objective, mask_ratio):
    seen.append((config.tokenizer, mask_ratio))
    return {'clips_per_s': 1.0}

  monkeypatch.setattr(train_bench, 'train_throughput', timed)
  monkeypatch.setattr(train_bench, 'input_throughput', lambda config: 1.0)
  run = lambda name, **kw: train_bench.run(name, 'spatiotemporal', None, None, 1, 'float32',
                                           False, 1, 0, None, objective='pretrain', **kw)
  rows = [run('vivit-hybrid-tiny'), run('vivit-tiny'), run('vivit-hybrid-tiny', mask_ratio=0.5)]
  assert seen == [('conv', configs.CONV_MASK_RATIO), ('tubelet', 0.9), ('conv', 0.5)]
  assert [r['mask_ratio'] for r in rows] == [0.75, 0.9, 0.5]


def test_a_pipeline_config_is_plain_data_until_resolved(monkeypatch):
  """Building a PipelineConfig reads no preset and no checkpoint; `resolve()` does, once."""
  reads = []

  def preset(name, **overrides):
    reads.append(name)
    return real(name, **overrides)

  real = configs.vivit_preset
  monkeypatch.setattr(configs, 'vivit_preset', preset)
  given = configs.PipelineConfig(preset='vivit-b-16x2', num_frames=16)
  assert reads == [] and not given.resolved
  assert (given.num_frames, given.image_size, given.frame_size) == (16, None, None)
  resolved = given.resolve()
  assert reads and resolved.resolved and resolved.resolve() is resolved
  assert (resolved.num_frames, resolved.image_size, resolved.frame_size) == (16, (224, 224),
                                                                            (224, 224))
  assert given.num_frames == 16 and given.image_size is None  # the given config is unchanged
  assert given.clip_config() == resolved.clip_config()  # derived values resolve for themselves
