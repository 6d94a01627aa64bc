"""Fine-tuning recipe: layer-wise learning-rate decay, hub presets, a start from an HF dir."""
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.bench.export_size import DecodeOnlyTransform
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import build_vivit
from vivit_tfx.models.network.vivit_config import preset
from vivit_tfx.models.trainer import export, training
from vivit_tfx.models.trainer import model as trainer
from vivit_tfx.pipeline import configs


def _one_layer_decay_step(weight_decay, gradient, names, relative=False):
  """One step of the layer-decay optimizer (decay 0.5, 2 blocks, lr 1e-2) with `gradient`
  (ones_like or zeros_like) on every variable: the largest change (relative to the largest
  value when `relative`) of the first variable whose path holds each of `names`."""
  config = preset('vivit-tiny', num_layers=2, layer_decay=0.5, learning_rate=1e-2,
                  warmup_steps=0, weight_decay=weight_decay, clipnorm=0.0)
  model = initialised_vivit(config)
  opt = training.optimizer(config, model, total_steps=100)
  before = {v.path: v.numpy().copy() for v in model.trainable_variables}
  opt.apply_gradients([(gradient(v), v) for v in model.trainable_variables])
  moved = {}
  for v in model.trainable_variables:
    old = before[v.path]
    scale = max(float(np.max(np.abs(old))), 1e-12) if relative else 1.0
    moved[v.path] = float(np.max(np.abs(old - v.numpy()))) / scale
  return [next(m for p, m in moved.items() if name in p) for name in names]


def test_layer_decay_scales_each_blocks_update():
  """One AdamW step with decay 0.5 over 2 blocks: the head moves by lr, block 1 by lr/2,
  block 0 by lr/4, the tubelet embedding by lr/8 (Adam's first step is lr * sign(g))."""
  steps = _one_layer_decay_step(0.0, tf.ones_like, ('head/kernel', 'block_1/mlp_in',
                                                    'block_0/mlp_in', 'tubelet_embedding'))
  np.testing.assert_allclose(steps, [1e-2, 5e-3, 2.5e-3, 1.25e-3], rtol=1e-3)


def test_layer_decay_scales_the_weight_decay_too():
  """A zero gradient leaves only the decoupled decay: each variable shrinks by lr x wd x its
  layer's factor (biases, norms and positions do not decay)."""
  shrink = _one_layer_decay_step(0.1, tf.zeros_like, (
      'block_1/mlp_in/kernel', 'block_0/mlp_in/kernel', 'tubelet_embedding/projection/kernel',
      'block_0/mlp_in/bias'), relative=True)
  np.testing.assert_allclose(shrink, [5e-4, 2.5e-4, 1.25e-4, 0.0], rtol=1e-3, atol=1e-9)


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf')
CPU = json.dumps({'precision': 'float32', 'jit_compile': False, 'batch_size': 2,
                  'accumulation_steps': 1, 'warmup_steps': 0})


def test_hub_preset_takes_clip_and_recipe_and_needs_its_directory(tmp_path):
  config = configs.PipelineConfig(preset='videomae-b-k400', output_root=str(tmp_path),
                                  init_checkpoint=os.path.join(FIXTURES, 'videomae')).resolve()
  model = config.vivit_config()
  # The architecture and clip from config.json (the tiny fixture: 4 frames, 32 px) ...
  assert (model.num_frames, model.image_size, model.hidden_size) == (4, (32, 32), 32)
  assert (model.classifier, model.positional, model.qkv_bias) == ('gap_fc_norm', 'sinusoidal',
                                                                  'qv')
  # ... the clip rate and the fine-tuning recipe from the preset, the pixels from the processor.
  assert config.sample_fps == 7.5 and config.frame_size == (32, 32)
  assert (model.layer_decay, model.stochastic_depth, model.label_smoothing) == (0.75, 0.1, 0.1)
  assert config.pixel_preprocessing().processor_class == 'VideoMAEImageProcessor'
  from vivit_tfx.pipeline import pipeline  # pylint: disable=g-import-not-at-top
  components = {c.id: c for c in pipeline.create_pipeline(config).components}
  transform = json.loads(components['Transform'].exec_properties['custom_config'])
  trainer = json.loads(components['Trainer'].exec_properties['custom_config'])
  assert transform['pixels'] == trainer['clip']['pixels'] == config.pixel_preprocessing(
      ).to_dict()
  with pytest.raises(ValueError, match='pass the downloaded directory'):
    preset('videomae-b-k400')
  with pytest.raises(ValueError, match='holds a vivit checkpoint'):
    preset('timesformer-b-k400', init_checkpoint=os.path.join(FIXTURES, 'vivit'))
  flagged = config.replace(variant='factorised_encoder')
  with pytest.raises(configs.ConfigError) as e:  # refused before any data is touched
    flagged.validate()
  assert len(e.value.errors) == 1 and 'variant=' in str(e.value) and 'conflicts' in str(e.value)
  with pytest.raises(configs.ConfigError, match='absent.json: no such file'):
    config.replace(pixels=str(tmp_path / 'absent.json')).validate()
  # A processor that resizes to a shortest edge above the crop (transformers' ViViT default,
  # 256 for 224): ingestion stores frames at that edge and Transform crops their centre.
  processor = tmp_path / 'preprocessor_config.json'
  processor.write_text(json.dumps({'image_processor_type': 'VivitImageProcessor',
                                   'size': {'shortest_edge': 256}}))
  wide = configs.PipelineConfig(preset='vivit-b-16x2', pixels=str(processor)).resolve()
  assert wide.frame_size == (256, 256) and wide.pixel_preprocessing().crop_size == (224, 224)


def test_run_fn_fine_tunes_from_a_hugging_face_directory(tmp_path, monkeypatch):
  """run_fn with `--preset videomae-b-k400 --init-checkpoint <tiny VideoMAE>`: the encoder
  starts from the checkpoint (the 3-label head is replaced by the binary one), layer-wise decay
  trains it, and the export records the checkpoint and its preprocessing for clients."""
  config = configs.PipelineConfig(preset='videomae-b-k400', vivit_overrides=CPU,
                                  init_checkpoint=os.path.join(FIXTURES, 'videomae'))
  vivit = config.vivit_config()
  pixels = config.pixel_preprocessing()
  stub = DecodeOnlyTransform(4, (32, 32), pixels)  # the processor, as Transform applies it
  stub.raw_metadata = types.SimpleNamespace(schema=None)
  monkeypatch.setattr(tft, 'TFTransformOutput', lambda path: stub)

  def dataset_factory(file_pattern, options, schema):
    records = export.synthetic_examples(4, (40, 48), count=4)  # stored frames: resize + crop
    frames = tf.io.parse_example(records, stub.raw_feature_spec())
    data = tf.data.Dataset.from_tensor_slices((frames, tf.constant([0, 1, 0, 1], tf.int64)))
    return data.repeat(options.num_epochs).batch(options.batch_size)

  serving = str(tmp_path / 'serving')
  trainer.run_fn(types.SimpleNamespace(
      custom_config={'vivit': vivit.to_dict(), 'distribution': 'auto', 'steps_per_epoch': 2,
                     'clip': {'num_frames': 4, 'frame_size': [40, 48],
                              'pixels': pixels.to_dict(),
                              'class_names': ['NonViolence', 'Violence']}},
      transform_output='unused', train_files=['unused'], eval_files=['unused'],
      data_accessor=types.SimpleNamespace(tf_dataset_factory=dataset_factory),
      train_steps=2, eval_steps=1, model_run_dir=str(tmp_path / 'run'),
      serving_model_dir=serving, base_model=None))
  with open(os.path.join(serving, export.CLIP_CONFIG_FILE)) as f:
    clip = json.load(f)
  assert clip['init_checkpoint'].endswith('videomae') and clip['hf_family'] == 'videomae'
  assert clip['pixels']['source'] == 'processor' and clip['vivit']['layer_decay'] == 0.75
  trained = export.load_keras_model(serving)
  start = initialised_vivit(vivit, classes=['NonViolence', 'Violence'])  # the checkpoint's weights
  kernel = lambda m: m.tokenizer.projection.kernel.numpy()
  assert np.abs(kernel(trained) - kernel(start)).max() < 2e-3  # 2 small steps from it
  assert np.abs(kernel(start) - kernel(build_vivit(vivit))).max() > 0.1
  served = tf.saved_model.load(serving).signatures['serving_default'](
      examples=tf.constant(export.synthetic_examples(4, (40, 48), count=2)))['probabilities']
  assert served.shape == (2, 1) and np.all(np.isfinite(served.numpy()))


def test_run_refuses_a_folder_that_is_not_a_hugging_face_directory(tmp_path, capsys):
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  (tmp_path / 'weights').mkdir()
  (tmp_path / 'weights' / 'pytorch_model.bin').write_bytes(b'x')
  rc = cli.main(['run', '--init-checkpoint', str(tmp_path / 'weights'),
                 '--output-root', str(tmp_path / 'out')])
  err = capsys.readouterr().err
  assert rc == 1 and 'without config.json' in err and len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'out')
