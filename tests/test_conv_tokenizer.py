"""The convolutional tokenizer (hybrid ViViT): token grid, gradients into the stem, every
variant and precision, two mirrored replicas, export and serving, maps back to pixels."""
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.bench.export_size import DecodeOnlyTransform
from vivit_tfx.data import features
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.inference import saliency
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import ConvTokenizer
from vivit_tfx.models.network.vivit_config import ViViTConfig, preset
from vivit_tfx.models.trainer import export, training
from tests.conftest import one_step_from_the_same_start

# 4 x 16 x 16 clips; stem /2 in space, then /2 in space, /2 in space and time: tokens cover
# 2 x 8 x 8 pixels → a 2 x 2 x 2 grid.
CONV = ViViTConfig(num_frames=4, image_size=(16, 16), tokenizer='conv', conv_widths=(4, 8),
                   conv_strides=((1, 2, 2), (1, 2, 2), (2, 1, 1)), hidden_size=16,
                   num_layers=1, num_temporal_layers=1, num_heads=2, mlp_dim=32,
                   warmup_steps=0, learning_rate=1e-2, weight_decay=0.0)
VARIANTS = ('spatiotemporal', 'factorised_encoder', 'factorised_self_attention',
            'factorised_dot_product')


def clips(n=4, seed=0):
  return np.random.default_rng(seed).normal(size=(n, 4, 16, 16, 3)).astype(np.float32)


def test_token_grid_is_the_strides_product():
  assert CONV.tubelet_size == (2, 4, 4) and CONV.token_grid == (2, 4, 4)
  model = initialised_vivit(CONV)
  assert isinstance(model.tokenizer, ConvTokenizer)
  assert model.tokenizer(clips()).shape == (4, 32, 16)  # [B, n_t * n_h * n_w, D]
  assert model(clips()).shape == (4, 1)
  tiny = preset('vivit-hybrid-tiny')
  assert (tiny.tokenizer, tiny.tubelet_size, tiny.token_grid) == ('conv', (4, 16, 16),
                                                                  (2, 4, 4))
  big = preset('vivit-hybrid-b')
  assert big.token_grid == (4, 14, 14) and big.hidden_size == 768


@pytest.mark.parametrize('changes, message', [
    (dict(conv_strides=((1, 2, 2), (1, 2, 2))), 'one per conv_widths'),
    (dict(image_size=(18, 18)), 'not a multiple'),
    (dict(conv_norm='instance'), 'conv_norm'),
    (dict(conv_input='flow'), 'conv_input'),
    (dict(init_checkpoint='vit.npz'), 'linear tokenizer'),
])
def test_bad_conv_settings_are_refused_in_one_line(changes, message):
  with pytest.raises(ValueError, match=message):
    ViViTConfig(**{**CONV.to_dict(), **changes})


def test_the_stem_sees_each_frame_and_its_difference_from_the_previous():
  x = clips(2)
  both = ConvTokenizer.with_differences(x)  # [B, T, H, W, 6]
  assert both.shape == (2, 4, 16, 16, 6)
  np.testing.assert_allclose(both[..., :3], x)
  np.testing.assert_allclose(both[:, 0, ..., 3:], 0)
  np.testing.assert_allclose(both[:, 1:, ..., 3:], x[:, 1:] - x[:, :-1], atol=1e-6)
  assert initialised_vivit(CONV).tokenizer.stem.kernel.shape == (1, 3, 3, 6, 4)
  assert initialised_vivit(CONV.replace(conv_input='rgb')).tokenizer.stem.kernel.shape == (1, 3, 3, 3,
                                                                                      4)


def test_a_model_saved_before_the_differences_loads_with_rgb_only():
  saved = CONV.replace(conv_input='rgb', conv_head=False).to_dict()
  del saved['conv_input'], saved['conv_head']  # as configs were written before the fields
  old = ViViTConfig.from_dict(saved)
  assert (old.conv_input, old.conv_head) == ('rgb', False)
  new = ViViTConfig.from_dict(CONV.to_dict())
  assert (new.conv_input, new.conv_head) == ('rgb+diff', True)


def test_the_cnn_features_add_their_own_logit_to_the_transformers():
  model = initialised_vivit(CONV)
  x = clips()
  rng = np.random.default_rng(3)
  for head in (model.head, model.conv_head):
    head.kernel.assign(rng.normal(size=head.kernel.shape).astype(np.float32))
  features = model.tokenizer.features(x)  # [B, n_t, n_h, n_w, 8]
  assert features.shape == (4, 2, 4, 4, 8)
  transformer = model.head(model.pool(model.encoder(model.tokenizer(x))))
  skip = model.conv_head(tf.reduce_mean(features, axis=(1, 2, 3)))
  np.testing.assert_allclose(model(x), transformer + skip, rtol=1e-5, atol=1e-5)
  assert initialised_vivit(CONV.replace(conv_head=False)).conv_head is None


def test_a_checkpoint_with_a_hybrid_preset_keeps_linear_patches():
  assert preset('vivit-hybrid-tiny', init_checkpoint='vit.npz').tokenizer == 'tubelet'


def test_gradients_reach_the_stem():
  model = initialised_vivit(CONV)
  model.head.kernel.assign(np.ones(model.head.kernel.shape, np.float32))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(clips(), training=True) ** 2)
  stem = model.tokenizer.stem.kernel
  grad = tape.gradient(loss, stem)
  assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_variant_learns_a_tiny_batch_with_the_conv_tokenizer(variant):
  config = CONV.replace(variant=variant, conv_norm='group')  # no moving statistics to settle
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=60)
  x, y = clips(8, seed=1), np.array([0, 1] * 4, np.float32)[:, None]
  before = model.evaluate(x, y, verbose=0, return_dict=True)['loss']
  model.fit(x, y, batch_size=8, epochs=60, verbose=0)
  assert model.evaluate(x, y, verbose=0, return_dict=True)['loss'] < 0.5 * before


@pytest.mark.parametrize('precision', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision_trains_with_float32_logits(precision):
  config = CONV.replace(precision=precision)
  model = initialised_vivit(config)
  assert model.tokenizer.stem.compute_dtype == precision.split('_')[1]
  training.compile_model(model, config, total_steps=2)
  x, y = clips(4), np.array([0, 1, 0, 1], np.float32)[:, None]
  history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
  assert np.isfinite(history.history['loss']).all()
  assert model(x).dtype == tf.float32


@pytest.mark.parametrize('k, norm', [(1, 'batch'), (2, 'group')])
def test_one_step_on_two_replicas_equals_one_step_on_one_device(k, norm):
  """Batch statistics are synchronised over the replicas ('batch'), or per clip ('group'),
  so the update on two mirrored replicas is the one-device update."""
  x, y = clips(8, seed=5), np.array([0, 1] * 4, np.float32)[:, None]
  weights = []
  for devices in (['/cpu:0'], ['/cpu:0', '/cpu:1']):
    config = CONV.replace(accumulation_steps=k, conv_norm=norm, learning_rate=0.1)
    model = one_step_from_the_same_start(config, devices, x, y)
    weights.append([v.numpy() for v in model.variables])  # moving statistics included
  # Adam moves each weight by up to the learning rate (0.1) whatever its gradient's size, so
  # float noise in a near-zero gradient's reduction shows up to ~1e-4; a wrong replica mean
  # or unsynchronised statistics move weights by a good part of 0.1.
  for a, b in zip(*weights):
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_export_and_serving_equal_the_keras_model():
  model = initialised_vivit(CONV)
  training.compile_model(model, CONV, total_steps=4)
  x, y = clips(8, seed=2), np.array([0, 1] * 4, np.float32)[:, None]
  model.fit(x, y, batch_size=8, epochs=4, verbose=0)  # moving statistics move
  directory = 'ram://conv_export/1'
  transform = DecodeOnlyTransform(4, (16, 16))
  export.export(model, CONV, transform, directory,
                ModelClipConfig(num_frames=4, frame_size=(16, 16)))
  examples = export.synthetic_examples(4, (16, 16))
  served = tf.saved_model.load(directory).signatures['serving_default'](
      examples=tf.constant(examples))[export.SERVING_OUTPUT].numpy()
  decoded = transform.transform_features_layer()({features.FRAMES: tf.constant([
      tf.train.Example.FromString(e).features.feature[features.FRAMES].bytes_list.value
      for e in examples])})[features.CLIP_XF]
  np.testing.assert_allclose(served, tf.sigmoid(model(decoded)).numpy(), atol=1e-5)
  rebuilt = export.load_keras_model(directory)
  np.testing.assert_allclose(rebuilt(decoded).numpy(), model(decoded).numpy(), atol=1e-5)


def test_maps_come_back_to_the_pixels_a_token_covers():
  """Content only inside token (1, 2, 3)'s 2 x 4 x 4 pixels: gradient x input is zero
  elsewhere, so the map puts all its mass on that token; rollout has the grid's shape."""
  model = initialised_vivit(CONV)
  model.head.kernel.assign(np.ones(model.head.kernel.shape, np.float32))
  clip = np.zeros((1, 4, 16, 16, 3), np.float32)
  clip[0, 2:4, 8:12, 12:16] = np.random.default_rng(3).normal(size=(2, 4, 4, 3))
  grid = saliency.gradient_map(model, tf.constant(clip))
  assert grid.shape == (2, 4, 4)
  assert grid[1, 2, 3] == pytest.approx(1.0)
  rollout = saliency.attention_rollout(model, tf.constant(clip))
  assert rollout.shape == (2, 4, 4) and rollout.sum() == pytest.approx(1.0)
