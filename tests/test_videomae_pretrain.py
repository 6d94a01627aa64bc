"""VideoMAE pre-training: tube masking, patch order, loss and logits against transformers."""
import dataclasses
import os

import keras
import numpy as np
import pytest

from vivit_tfx.models.checkpoints import hf_checkpoint
from vivit_tfx.models.checkpoints.pixel_preprocessing import IMAGENET_DEFAULT
from vivit_tfx.models.network.vivit import build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.videomae import videomae_pretrain as vp

TINY = ViViTConfig(num_frames=4, image_size=(32, 32), tubelet_size=(2, 8, 8), hidden_size=32,
                   num_layers=2, num_heads=2, mlp_dim=64)


@pytest.mark.parametrize('ratio', [0.9, 0.75, 0.5])
def test_tube_mask_hides_exactly_the_ratio_on_the_same_positions_of_every_slice(ratio):
  grid = (4, 5, 6)  # n_t, n_h, n_w
  mask = np.asarray(vp.tube_mask(64, grid, ratio, seed=3)).reshape(64, 4, 30)
  assert mask.dtype == bool
  np.testing.assert_array_equal(mask.sum(axis=2), int(ratio * 30))  # every clip, every slice
  assert (mask == mask[:, :1]).all()  # the same spatial positions on every temporal slice
  assert len({m[0].tobytes() for m in mask}) > 1  # a fresh draw per clip


def test_split_order_lists_visible_then_hidden_tokens_in_token_order():
  mask = np.array([[True, False, True, False, False]])
  np.testing.assert_array_equal(np.asarray(vp.split_order(mask)), [[1, 3, 4, 0, 2]])


def test_patchify_orders_pixels_time_then_rows_then_columns_then_channels():
  clips = np.arange(1 * 4 * 4 * 4 * 2, dtype='float32').reshape(1, 4, 4, 4, 2)
  patches = np.asarray(vp.patchify(clips, (2, 2, 2)))  # [1, 2*2*2, 8, 2]
  assert patches.shape == (1, 8, 8, 2)
  # Token 5 = (i_t 1, i_h 0, i_w 1); its pixel 3 = (dt 0, dh 1, dw 1).
  np.testing.assert_array_equal(patches[0, 5, 3], clips[0, 2, 1, 3])


def test_encoder_sees_only_the_visible_tubelets_and_the_loss_trains():
  model = vp.build_pretrainer(TINY, vp.PretrainConfig(mask_ratio=0.75))
  assert model.n_hidden == 2 * 12
  clips = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype('float32')
  mask = model.random_mask(2)
  visible = model.encode_visible(clips, mask)
  assert tuple(visible.shape) == (2, 8, 32)  # 32 tokens, 24 hidden
  loss, logits = model.loss_on(clips, mask)
  assert tuple(logits.shape) == (2, 24, 2 * 8 * 8 * 3) and np.isfinite(float(loss))


HF_PRETRAINING = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf', 'videomae-pretraining')


def _hf_pretrainer(classifier='gap'):
  """The transformers fixture's architecture; encoder and decoder loaded from it."""
  spec = hf_checkpoint.load_hf_config(HF_PRETRAINING)
  c = spec.config
  vivit = ViViTConfig(**{**spec.architecture, 'classifier': classifier})
  config = vp.PretrainConfig(
      mask_ratio=0.75, decoder_hidden_size=c['decoder_hidden_size'],
      decoder_num_layers=c['decoder_num_hidden_layers'],
      decoder_num_heads=c['decoder_num_attention_heads'],
      decoder_mlp_dim=c['decoder_intermediate_size'], norm_pix_loss=c['norm_pix_loss'],
      pixel_mean=IMAGENET_DEFAULT[0], pixel_std=IMAGENET_DEFAULT[1])
  model = vp.build_pretrainer(vivit, config)
  vp.load_hf_pretraining(model, HF_PRETRAINING)
  return model


@pytest.mark.parametrize('classifier', ['gap', 'gap_fc_norm'])
def test_loss_and_reconstruction_equal_transformers(classifier):
  with np.load(os.path.join(HF_PRETRAINING, 'expected.npz')) as data:
    want = {k: data[k] for k in data.files}
  model = _hf_pretrainer(classifier)
  loss, logits = model.loss_on(want['pixels'].astype('float32'), want['bool_masked_pos'])
  np.testing.assert_allclose(np.asarray(logits), want['decoder_logits'], atol=1e-5)
  np.testing.assert_allclose(float(loss), float(want['loss']), atol=1e-5)


def test_norm_pix_floor_keeps_a_flat_tubelets_noise_small():
  """Standardised per tubelet, a still background's noise (std 0.01) becomes a unit-variance
  target, as loud as a moving edge's; with norm_pix_floor 0.1 it stays near 0.03, a textured
  tubelet stays near unit, and the reconstruction inverts the same standardisation."""
  rng = np.random.default_rng(0)
  clips = rng.normal(size=(1, 2, 16, 8, 3)).astype('float32')  # two 2x8x8 tubelets
  clips[:, :, :8] *= 0.01  # the first: flat (noise only)
  plain = np.asarray(vp.targets(clips, vp.PretrainConfig(), (2, 8, 8)))  # [1, 2, 384]
  floored = np.asarray(vp.targets(clips, vp.PretrainConfig(norm_pix_floor=0.1), (2, 8, 8)))
  assert plain[0, 0].std() == pytest.approx(1.0, abs=0.01)
  assert floored[0, 0].std() == pytest.approx(0.01 / np.sqrt(0.1), rel=0.1)
  assert floored[0, 1].std() == pytest.approx(1 / np.sqrt(1.1), rel=0.1)
  with pytest.raises(ValueError, match='norm_pix_floor'):
    vp.PretrainConfig(norm_pix_floor=-0.1)
  config = vp.PretrainConfig(mask_ratio=0.5, norm_pix_floor=0.1)
  model = vp.build_pretrainer(dataclasses.replace(TINY, image_size=(16, 8), num_frames=2),
                              config)
  model.decoder_head = lambda x: ops_targets  # the exact targets as the prediction
  mask = model.random_mask(1)
  order = np.asarray(vp.split_order(mask))[:, -model.n_hidden:]
  ops_targets = np.take_along_axis(floored, order[:, :, None], axis=1)
  shown = model.reconstruct(clips, mask)
  np.testing.assert_allclose(shown['reconstruction'], clips, atol=1e-4)


def test_hub_pretraining_checkpoint_feeds_fine_tuning(tmp_path):
  """The checkpoint continues pre-training here, and its encoder starts a classifier."""
  model = _hf_pretrainer()
  vp.save(model, str(tmp_path), {'step': [], 'loss': []}, {})
  fine = build_vivit(model.vivit.config)
  source = vp.load_encoder(fine, str(tmp_path))
  assert source == {'pretrained_encoder': str(tmp_path)}
  np.testing.assert_array_equal(fine.tokenizer.projection.kernel.numpy(),
                                model.vivit.tokenizer.projection.kernel.numpy())
  with pytest.raises(ValueError, match='another architecture'):
    vp.load_encoder(build_vivit(model.vivit.config.replace(num_layers=1)),
                    str(tmp_path))


def test_pretraining_continues_from_an_earlier_pretraining_model(tmp_path):
  """A PretrainTrainer model directory (`--pretrain-overrides '{"checkpoint": DIR}'`) brings
  back the encoder and the decoder; other decoder settings are one line."""
  config = vp.PretrainConfig(decoder_hidden_size=16, decoder_num_layers=1, decoder_num_heads=2,
                             decoder_mlp_dim=32)
  keras.utils.set_random_seed(1)
  earlier = vp.build_pretrainer(TINY, config)
  vp.save(earlier, str(tmp_path), {'step': [], 'loss': []}, {})
  keras.utils.set_random_seed(2)
  model = vp.build_pretrainer(TINY, config)
  assert not all(np.array_equal(a, b) for a, b in zip(earlier.get_weights(), model.get_weights()))
  assert vp.load_checkpoint(model, str(tmp_path)) == {'pretrained_from': str(tmp_path)}
  assert len(model.get_weights()) == len(earlier.get_weights())
  for a, b in zip(earlier.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(a, b)
  wider = vp.build_pretrainer(TINY, dataclasses.replace(config, decoder_hidden_size=32))
  with pytest.raises(ValueError, match=r'other settings \(decoder_hidden_size differ\)'):
    vp.load_checkpoint(wider, str(tmp_path))


def test_pretrain_settings_are_checked_before_any_data_is_touched(tmp_path):
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  linear = dict(pretrain=True, preset='vivit-tiny')
  cases = {"needs conv_norm 'group'": dict(pretrain=True,
                                           vivit_overrides='{"conv_norm": "batch"}'),
           'self-training threshold': dict(unlabeled_videos=str(tmp_path),
                                           self_training_overrides='{"threshold": 2}'),
           'CLS token': dict(linear, vivit_overrides='{"classifier": "token"}'),
           'mask_ratio': dict(linear, pretrain_overrides='{"mask_ratio": 1.5}'),
           # The encoder's own checks (`check_encoder`), asked before any data too.
           'a future mask needs 2 or more temporal slices': dict(
               linear, pretrain_overrides='{"mask": "future"}',
               vivit_overrides='{"tubelet_size": [8, 16, 16]}'),
           'not a JSON object': dict(linear, pretrain_overrides='[1]')}
  for message, settings in cases.items():
    with pytest.raises(configs.ConfigError, match=message):
      configs.PipelineConfig(output_root=str(tmp_path), **settings).validate()
  hybrid = configs.PipelineConfig(output_root=str(tmp_path), pretrain=True).resolve()
  hybrid.validate()  # the default hybrid pre-trains through masked convolutions
  assert hybrid.pretrain_config().mask_ratio == configs.CONV_MASK_RATIO
  linear = configs.PipelineConfig(output_root=str(tmp_path), **linear).resolve()
  assert linear.pretrain_config().mask_ratio == 0.9  # VideoMAE's


def test_unlabeled_clips_never_land_on_the_labelled_clips(tmp_path):
  """With --overwrite, ingesting the unlabelled footage into --clips-dir (or a folder nested
  with it) would replace the labelled clips the run trains on: refused before anything."""
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  clips = tmp_path / 'clips'
  for target in (clips, clips / 'more', tmp_path):
    with pytest.raises(configs.ConfigError, match='would replace the labelled ones'):
      configs.PipelineConfig(output_root=str(tmp_path / 'out'), clips_dir=str(clips),
                             unlabeled_videos=str(tmp_path / 'raw'),
                             unlabeled_clips_dir=str(target)).validate()
  configs.PipelineConfig(output_root=str(tmp_path / 'out'), clips_dir=str(clips),
                         unlabeled_videos=str(tmp_path / 'raw')).validate()  # the default


def test_each_replica_draws_its_own_masks():
  """The mask seed generator's state is mirrored: without the replica in the seed, both
  replicas hid the same tubelets of their clips (a global batch of 2B clips, B masks)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  strategy = tf.distribute.MirroredStrategy(
      ['/cpu:0', '/cpu:1'], cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = vp.build_pretrainer(TINY, vp.PretrainConfig(mask_ratio=0.5))
  draw = tf.function(lambda: strategy.run(lambda: model.random_mask(4)))
  first, second = [m.numpy() for m in strategy.experimental_local_results(draw())]
  assert first.shape == second.shape == (4, TINY.num_tokens)
  for mask in (first, second):
    assert (mask.sum(axis=1) == model.n_hidden).all()
  assert not np.array_equal(first, second)
  again = [m.numpy() for m in strategy.experimental_local_results(draw())]
  assert not np.array_equal(first, again[0])  # and new masks at every step


HYBRID = ViViTConfig(tokenizer='conv', num_frames=8, image_size=(32, 32),
                     conv_widths=(8, 8, 16), hidden_size=32, num_layers=1, num_heads=2,
                     mlp_dim=32)


@pytest.mark.parametrize('clipnorm,architecture', [(0.05, TINY), (0.0, TINY), (0.05, HYBRID)])
def test_one_pretraining_step_on_two_replicas_equals_one_step_on_one_device(clipnorm,
                                                                            architecture):
  """The pre-training step shares the fine-tuning step's update: on two mirrored replicas the
  mean gradient, clipped once (Keras 3.6's own apply sums the replicas' gradients, each
  clipped on its own). The mask is fixed, so both runs hide the same tubelets; the hybrid
  pre-trains through its masked convolutions. Unclipped, Adam's first moment shows the
  gradient's scale (a sum would be 2x)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import training  # pylint: disable=g-import-not-at-top
  clips = np.random.default_rng(5).normal(
      size=(8, architecture.num_frames, 32, 32, 3)).astype('float32')
  weights, moments = [], []
  for devices in (['/cpu:0'], ['/cpu:0', '/cpu:1']):
    keras.utils.set_random_seed(1)
    recipe = architecture.replace(clipnorm=clipnorm, learning_rate=0.1, weight_decay=0.0,
                          warmup_steps=0)
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
      model = vp.build_pretrainer(recipe, vp.PretrainConfig(mask_ratio=0.5))
      for v in model.trainable_variables:
        v.assign(np.random.default_rng(7).normal(0, 0.2, v.shape).astype(np.float32))
      model.compile(optimizer=training.optimizer(recipe, model, 100_000))
    fixed = model.random_mask(1)  # [1, N]: every clip hides the same tubelets
    model.random_mask = lambda batch, fixed=fixed: tf.tile(fixed, [batch, 1])
    model.fit(clips, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    weights.append([v.numpy() for v in model.trainable_variables])
    moments.append([m.numpy() for m in model.optimizer._momentums])  # pylint: disable=protected-access
  for a, b in zip(*weights):
    np.testing.assert_allclose(a, b, atol=2e-5)
  for a, b in zip(*moments):  # (1 - beta_1) * the clipped gradient: its scale shows here
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max() + 1e-12)
