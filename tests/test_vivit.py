"""ViViT: axis order (impulse test), token counts, positional shapes, real heads, Model 2 weight
sharing, every variant learns, n_classes, save/load and config round-trips."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.checkpoints.vit_checkpoint import inflate_2d_kernel
from vivit_tfx.models.network.vivit import EncoderBlock, StochasticDepth, TubeletEmbedding, ViViT
from vivit_tfx.models.network.vivit_config import PRESETS, ViViTConfig, preset
from vivit_tfx.models.trainer import training

TINY = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, 8, 8), hidden_size=16,
                   num_layers=2, num_temporal_layers=1, num_heads=2, mlp_dim=32,
                   warmup_steps=5, learning_rate=3e-3, weight_decay=0.0)
VARIANTS = ('spatiotemporal', 'factorised_encoder', 'factorised_self_attention')


def test_impulse_changes_only_the_containing_tubelet():
  t, h, w = 2, 4, 8  # deliberately all different, so a transposed kernel would show
  layer = TubeletEmbedding(8, (t, h, w))
  clip = np.zeros((1, 6, 16, 24, 3), np.float32)
  base = layer(clip).numpy()
  n_t, n_h, n_w = 6 // t, 16 // h, 24 // w
  assert base.shape == (1, n_t * n_h * n_w, 8)
  for (ft, y, x) in [(5, 0, 0), (0, 15, 1), (3, 6, 17), (1, 13, 23)]:
    poked = clip.copy()
    poked[0, ft, y, x, 1] = 1.0
    changed = np.where(np.abs(layer(poked).numpy() - base).sum(-1)[0] > 0)[0]
    expected = (ft // t) * n_h * n_w + (y // h) * n_w + (x // w)
    assert changed.tolist() == [expected], (ft, y, x)


@pytest.mark.parametrize('frames,size,tubelet,tokens', [
    (8, (64, 64), (2, 16, 16), 4 * 4 * 4),
    (32, (224, 224), (2, 16, 16), 16 * 14 * 14),
    (16, (32, 48), (4, 8, 16), 4 * 4 * 3),
    (8, (32, 32), (1, 8, 8), 8 * 4 * 4),
])
def test_token_counts_and_positional_shape(frames, size, tubelet, tokens):
  config = TINY.replace(num_frames=frames, image_size=size, tubelet_size=tubelet)
  assert config.num_tokens == tokens
  for classifier, extra in (('gap', 0), ('token', 1)):
    model = initialised_vivit(config.replace(classifier=classifier))
    table = model.encoder.position.table
    assert tuple(table.shape) == (1, tokens + extra, 16)


def test_uniform_frame_tokenizer_has_one_frame_tubelets():
  config = TINY.replace(tokenizer='uniform_frame')
  assert config.tubelet_size == (1, 8, 8) and config.token_grid == (4, 2, 2)


def test_factorised_positional_embedding():
  model = initialised_vivit(TINY.replace(positional='factorised'))
  pos = model.encoder.position
  assert tuple(pos.spatial.shape) == (1, 1, 4, 16) and tuple(pos.temporal.shape) == (1, 2, 1, 16)


def test_mismatched_input_fails_clearly():
  model = initialised_vivit(TINY)
  with pytest.raises(ValueError, match=r'expects clips of shape \[B, 4, 16, 16, 3\]'):
    model(np.zeros((1, 4, 24, 16, 3), np.float32))
  with pytest.raises(ValueError, match='not a multiple of the tubelet size'):
    TINY.replace(image_size=(20, 16))


def test_stochastic_depth_drops_apart_on_each_replica():
  """Its seed generator's state is mirrored under tf.distribute: without the replica in the
  seed, both replicas dropped the same positions of their batches."""
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'], cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    drop = StochasticDepth(0.5)
  run = tf.function(lambda: strategy.run(lambda: drop(tf.ones([16, 3, 4]), training=True)))
  first, second = [k.numpy()[:, 0, 0] for k in strategy.experimental_local_results(run())]
  assert set(first) | set(second) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / 0.5
  assert not np.array_equal(first, second)


def test_heads_are_independent():
  block = EncoderBlock(16, 4, 32)
  x = np.random.default_rng(0).normal(size=(2, 10, 16)).astype(np.float32)
  block.build(x.shape)
  _, scores = block.attention(x, return_attention_scores=True)
  scores = scores.numpy()  # [B, heads, N, N]
  assert scores.shape == (2, 4, 10, 10)
  for i in range(1, 4):
    assert not np.allclose(scores[:, 0], scores[:, i], atol=1e-4)


def test_model2_spatial_encoder_shared_across_time():
  model = initialised_vivit(TINY.replace(variant='factorised_encoder'))
  frames = np.random.default_rng(1).random((1, 2, 16, 16, 3)).astype(np.float32)
  clip = np.concatenate([frames, frames], axis=1)  # tubelet slices 0 and 1 identical
  reps = model.frame_representations(clip).numpy()  # [1, n_t=2, D]
  np.testing.assert_allclose(reps[0, 0], reps[0, 1], atol=1e-5)
  assert not np.allclose(reps[0, 0], 0)


def test_model3_temporal_attention_starts_as_identity():
  model = initialised_vivit(TINY.replace(variant='factorised_self_attention'))
  out = model.encoder.blocks[0].temporal_attention.out.kernel.numpy()
  assert np.all(out == 0)


@pytest.mark.parametrize('variant', VARIANTS)
def test_each_variant_overfits_a_tiny_batch(variant):
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  x = rng.random((8, 4, 16, 16, 3)).astype(np.float32)
  y = np.array([0, 1] * 4, np.int64)
  config = TINY.replace(variant=variant)
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=100)
  first = model.evaluate(x, y, verbose=0)[0]
  model.fit(x, y, batch_size=8, epochs=100, verbose=0)
  last = model.evaluate(x, y, verbose=0)[0]
  assert last < 0.4 * first, (first, last)


@pytest.mark.parametrize('n_classes,outputs', [(2, 1), (5, 5)])
def test_n_classes_output_shape_and_loss(n_classes, outputs):
  config = TINY.replace(n_classes=n_classes)
  model = initialised_vivit(config)
  logits = model(np.zeros((3, 4, 16, 16, 3), np.float32))
  assert tuple(logits.shape) == (3, outputs)
  value = training.loss(config)(np.array([[0], [1], [1]]), logits)
  assert np.isfinite(float(value))


def test_weight_decay_exclusions():
  config = TINY.replace(classifier='token', weight_decay=0.05)
  model = initialised_vivit(config)
  opt = training.optimizer(config, model, total_steps=10)
  decayed = {v.name for v in model.trainable_variables if opt._use_weight_decay(v)}
  assert decayed and all(n == 'kernel' for n in decayed)
  excluded = {v.name for v in training.no_decay_variables(model)}
  assert {'gamma', 'beta', 'bias', 'pos_embedding', 'cls_token'} <= excluded


def test_schedule_warms_up_then_decays():
  schedule = training.learning_rate_schedule(TINY.replace(warmup_steps=10), total_steps=100)
  lr = [float(schedule(s)) for s in (0, 5, 10, 55, 99)]
  assert lr[0] == 0 and lr[1] < lr[2] and abs(lr[2] - 3e-3) < 1e-9 and lr[3] < lr[2]
  assert lr[4] < 1e-4


def test_config_json_round_trip_and_presets():
  config = preset('vivit-b-16x2', variant='factorised_encoder')
  assert ViViTConfig.from_json(config.to_json()) == config
  assert json.loads(config.to_json())['tubelet_size'] == [2, 16, 16]
  assert (config.hidden_size, config.num_layers, config.num_heads, config.mlp_dim) == (
      768, 12, 12, 3072)
  assert set(PRESETS) >= {'vivit-tiny', 'vivit-b-16x2', 'vivit-l-16x2'}
  with pytest.raises(ValueError, match='unknown preset'):
    preset('vivit-x-3')


def test_get_config_from_config_round_trip():
  model = initialised_vivit(TINY.replace(variant='factorised_encoder'))
  clone = ViViT.from_config(model.get_config())
  assert clone.config == model.config


def test_saved_model_reload_identical(tmp_path):
  model = initialised_vivit(TINY.replace(classifier='token'))
  for v in model.trainable_variables:  # non-trivial weights (the head starts at zero)
    v.assign(np.random.default_rng(0).normal(0, 0.1, v.shape).astype('float32'))
  x = np.random.default_rng(2).random((2, 4, 16, 16, 3)).astype(np.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, 4, 16, 16, 3], tf.float32)])
  def serve(clips):
    return {'logits': model(clips, training=False)}

  tf.saved_model.save(model, str(tmp_path), signatures={'serving_default': serve})
  loaded = tf.saved_model.load(str(tmp_path))
  np.testing.assert_allclose(loaded.signatures['serving_default'](tf.constant(x))['logits'],
                             model(x), atol=1e-5)


@pytest.mark.parametrize('method', ['filter_inflation', 'central_frame'])
def test_kernel_inflation_from_local_checkpoint(tmp_path, method):
  kernel_2d = np.random.default_rng(3).normal(size=(8, 8, 3, 16)).astype(np.float32)
  inflated = inflate_2d_kernel(kernel_2d, 2, method)
  assert inflated.shape == (2, 8, 8, 3, 16)
  if method == 'filter_inflation':
    np.testing.assert_allclose(inflated.sum(0), kernel_2d, atol=1e-6)
  else:
    np.testing.assert_array_equal(inflated[1], kernel_2d)
    assert not inflated[0].any()
  path = str(tmp_path / 'vit.npz')
  np.savez(path, kernel=kernel_2d)
  model = initialised_vivit(TINY.replace(kernel_init=method, kernel_init_checkpoint=path))
  np.testing.assert_allclose(model.tokenizer.projection.kernel.numpy(), inflated)
  with pytest.raises(ValueError, match='nothing is downloaded'):
    initialised_vivit(TINY.replace(kernel_init=method))


VIDEOMAE = TINY.replace(classifier='gap_fc_norm', positional='sinusoidal', qkv_bias='qv',
                        layer_norm_eps=1e-12)
TIMESFORMER = TINY.replace(variant='factorised_self_attention', tokenizer='uniform_frame',
                           classifier='token', positional='per_frame',
                           factorised_order='time_space')


def test_videomae_options_shape_the_weights():
  model = initialised_vivit(VIDEOMAE)
  names = [v.path for v in model.weights]
  assert not any('pos_embedding' in n or 'cls_token' in n for n in names)  # fixed, no CLS
  attention = model.encoder.blocks[0].attention
  assert attention.query.bias is not None and attention.value.bias is not None
  assert attention.key.bias is None  # VideoMAE: q and v biases only
  assert model.encoder.norm is None and model.fc_norm.epsilon == 1e-5  # mean, then fc_norm
  assert model.encoder.blocks[0].norm_mlp.epsilon == 1e-12
  table = model.encoder.position.fixed[0]
  assert table.shape == (VIDEOMAE.num_tokens, 16)
  np.testing.assert_allclose(table[3, :2], [np.sin(3.0), np.cos(3.0)], atol=1e-6)


def test_fc_norm_pools_before_normalising():
  model = initialised_vivit(VIDEOMAE)
  clip = np.random.default_rng(0).normal(size=(1, 4, 16, 16, 3)).astype(np.float32)
  tokens = model.encoder(model.tokenizer(clip))  # [1, N, D], not normalised per token
  expected = model.head(model.fc_norm(np.mean(tokens, axis=1)))
  np.testing.assert_allclose(model(clip), expected, atol=1e-6)


def test_tanh_gelu_changes_the_output():
  clip = np.random.default_rng(1).normal(size=(1, 4, 16, 16, 3)).astype(np.float32)
  exact = initialised_vivit(TINY.replace(classifier='token'))
  tanh = initialised_vivit(TINY.replace(classifier='token', activation='gelu_tanh'))
  tanh.set_weights(exact.get_weights())
  # A random head: an all-ones one sums the final LayerNorm's zero-mean features (logit ≈ 0
  # for both, equal to the last bit on some orders of the test run).
  head = np.random.default_rng(2).normal(size=tanh.head.kernel.shape).astype(np.float32)
  tanh.head.kernel.assign(head)
  exact.head.kernel.assign(head)
  diff = np.abs(tanh(clip).numpy() - exact(clip).numpy()).max()
  assert 0 < diff < 1e-2


def test_timesformer_order_cls_per_frame_and_per_frame_positions():
  model = initialised_vivit(TIMESFORMER)
  position = model.encoder.position
  n_t, n_s = 4, 4
  assert tuple(position.spatial.shape) == (1, 1 + n_s, 16)  # CLS slot + one frame's grid
  assert tuple(position.temporal.shape) == (1, n_t, 16)
  block = model.encoder.blocks[0]
  assert not block.temporal_dense.kernel.numpy().any()  # starts as identity
  block.temporal_dense.kernel.assign(np.eye(16, dtype=np.float32))
  x = np.random.default_rng(2).normal(size=(1, 1 + n_t * n_s, 16)).astype(np.float32)
  # A patch of frame 2 reaches the CLS token and, through time and then space, every patch.
  poked = x.copy()
  poked[0, 1 + 2 * n_s + 1, 0] += 1.0
  changed = np.abs(block(poked).numpy() - block(x).numpy()).sum(-1)[0] > 1e-5
  assert changed.all()
  with pytest.raises(ValueError, match='time_space'):
    TINY.replace(classifier='token', variant='factorised_self_attention')
