"""Masked pre-training through the conv tokenizer: the masking reaches the stem."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.network.vivit import build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.videomae import masked_conv
from vivit_tfx.models.videomae import videomae_pretrain as vp

# 8 frames at 32 px through the default strides: a 2 x 2 x 2 token grid of 4 x 16 x 16 cells.
HYBRID = ViViTConfig(tokenizer='conv', num_frames=8, image_size=(32, 32), conv_widths=(8, 8, 16),
                     hidden_size=32, num_layers=1, num_heads=2, mlp_dim=32)


def _clips(seed, n=2):
  return np.random.default_rng(seed).normal(size=(n, 8, 32, 32, 3)).astype('float32')


def _pixel_cells(mask):  # [B, N] hidden → [B, T, H, W, 1] hidden, at the clips' pixels
  visible = 1.0 - np.asarray(mask, 'float32').reshape(-1, *HYBRID.token_grid)
  return np.asarray(masked_conv.cells_at(visible, (None, 8, 32, 32, 3))) == 0


def test_visible_tokens_see_no_hidden_pixel():
  """Any change to the hidden tubelets' pixels leaves the visible tokens as they were; the
  plain tokenizer, dropping hidden tokens after the stem (VideoMAE's order), leaks them."""
  model = vp.build_pretrainer(HYBRID, vp.PretrainConfig(mask_ratio=0.5))
  clips = _clips(0)
  mask = model.random_mask(2)
  changed = np.where(_pixel_cells(mask), _clips(1) * 5.0, clips)
  assert not np.array_equal(changed, clips)
  visible = ~np.asarray(mask)  # [B, N]
  masked = [np.asarray(model.tokens(c, mask))[visible] for c in (clips, changed)]
  np.testing.assert_allclose(masked[0], masked[1], atol=1e-5)
  plain = [np.asarray(model.vivit.tokenizer(c))[visible] for c in (clips, changed)]
  assert np.abs(plain[0] - plain[1]).max() > 1e-2


def test_masked_group_norm_takes_the_visible_cells_statistics():
  norm = keras.layers.GroupNormalization(groups=2, epsilon=1e-3)
  norm.build((None, 2, 4, 4, 4))
  norm.gamma.assign(np.arange(1, 5, dtype='float32'))
  norm.beta.assign(np.full(4, 0.5, 'float32'))
  x = np.random.default_rng(2).normal(2.0, 3.0, size=(1, 2, 4, 4, 4)).astype('float32')
  everything = np.ones((1, 2, 4, 4, 1), 'float32')
  np.testing.assert_allclose(np.asarray(masked_conv.masked_group_norm(norm, x, everything)),
                             np.asarray(norm(x)), atol=1e-4)  # all visible: group norm itself
  cells = everything.copy()
  cells[:, :, :2] = 0.0  # the top half hidden
  got = np.asarray(masked_conv.masked_group_norm(norm, x, cells))
  seen = x[:, :, 2:]  # [1, 2, 2, 4, 4]
  for g, channels in enumerate((slice(0, 2), slice(2, 4))):
    values = seen[..., channels]
    want = ((values - values.mean()) / np.sqrt(values.var() + 1e-3) *
            np.arange(1, 5)[channels] + 0.5)
    np.testing.assert_allclose(got[:, :, 2:, :, channels], want, atol=1e-4, err_msg=f'group {g}')
  assert not got[:, :, :2].any()  # the hidden cells stay empty


def test_the_hybrid_pretrains_on_its_stems_input_and_the_gradient_reaches_the_stem():
  model = vp.build_pretrainer(HYBRID, vp.PretrainConfig(mask_ratio=0.5))
  assert model.n_hidden == 2 * 2
  clips = _clips(3)
  mask = model.random_mask(2)
  with tf.GradientTape() as tape:
    loss, logits = model.loss_on(clips, mask, training=True)
  # Pixels and frame differences ('rgb+diff') of each hidden 4 x 16 x 16 tubelet.
  assert tuple(logits.shape) == (2, 4, 4 * 16 * 16 * 6) and np.isfinite(float(loss))
  stem = model.vivit.tokenizer.stem.kernel
  assert float(tf.reduce_max(tf.abs(tape.gradient(loss, stem)))) > 0
  shown = model.reconstruct(clips, mask)
  assert shown['reconstruction'].shape == clips.shape


def test_a_pretrained_hybrid_encoder_starts_fine_tuning(tmp_path):
  keras.utils.set_random_seed(4)
  model = vp.build_pretrainer(HYBRID, vp.PretrainConfig(mask_ratio=0.5))
  vp.save(model, str(tmp_path), {'step': [], 'loss': []}, {})
  fine = build_vivit(HYBRID)
  assert vp.load_encoder(fine, str(tmp_path)) == {'pretrained_encoder': str(tmp_path)}
  np.testing.assert_array_equal(fine.tokenizer.stem.kernel.numpy(),
                                model.vivit.tokenizer.stem.kernel.numpy())


def test_batch_norm_stems_are_refused():
  with pytest.raises(ValueError, match="needs conv_norm 'group'"):
    vp.build_pretrainer(HYBRID.replace(conv_norm='batch'), vp.PretrainConfig())


def test_the_motion_objective_predicts_where_things_move_next():
  """mask 'future', target 'motion': the later temporal half hidden, its motion maps the
  target; a disc moving right on a still background moves only where it goes."""
  config = vp.PretrainConfig(mask='future', target='motion')
  model = vp.build_pretrainer(HYBRID, config)
  mask = np.asarray(model.random_mask(2))
  n_s = 2 * 2
  assert model.n_hidden == n_s and not mask[:, :n_s].any() and mask[:, n_s:].all()
  clips = np.zeros((1, 8, 32, 32, 3), 'float32')
  for f in range(8):  # a 4 x 4 square, one pixel right per frame, in the top-left cell
    clips[0, f, 4:8, 2 + f:6 + f] = 1.0
  motion = np.asarray(vp.motion_map(clips, config))  # [1, 8, 8, 8, 1]
  assert motion.shape == (1, 8, 8, 8, 1) and not motion[0, 0].any()
  assert motion[0, 1:, 1].sum() > 0 and not motion[0, :, 2:].any()  # only in its rows
  target = np.asarray(vp.targets(clips, config, HYBRID.tubelet_size))  # [1, N, 4 * 4 * 4]
  assert target.shape == (1, 8, 64) and target[0, 0].any() and not target[0, 3].any()
  loss, logits = model.loss_on(np.repeat(clips, 2, axis=0), model.random_mask(2))
  assert tuple(logits.shape) == (2, n_s, 64) and np.isfinite(float(loss))
  shown = model.reconstruct(np.repeat(clips, 2, axis=0), model.random_mask(2))
  assert shown['original'].shape == (2, 8, 8, 8, 3)
  # A traced step, the batch size unknown (fit on a dataset): the mask keeps N static.
  from vivit_tfx.models.trainer import training  # pylint: disable=g-import-not-at-top
  model.compile(optimizer=training.optimizer(HYBRID, model, 10))
  data = tf.data.Dataset.from_tensor_slices(np.repeat(clips, 4, axis=0)).batch(2)
  history = model.fit(data, epochs=1, verbose=0).history
  assert np.isfinite(history['loss'][-1])


def test_a_pretrain_setting_outside_its_choices_is_one_line():
  with pytest.raises(ValueError, match="mask must be one of tube, future, got 'random'"):
    vp.PretrainConfig(mask='random')


def test_a_visible_cell_among_hidden_ones_gives_what_the_cell_alone_gives():
  """SparK's sparse convolution: a visible cell whose neighbours are hidden gives the features
  the same cell gives on its own (zero padding at its borders). So the stem's output on the
  hidden cells (its bias: no hidden pixel, which is why the leak test cannot see it) is emptied
  before the next convolution."""
  tokenizer = build_vivit(HYBRID).tokenizer
  tokenizer.stem.bias.assign(np.linspace(-1.0, 1.0, tokenizer.stem.bias.shape[0]))
  clips = _clips(3, n=1)
  visible = np.zeros((1,) + HYBRID.token_grid, 'float32')
  visible[0, 0, 0, 0] = 1.0  # the first cell: frames 0-3, pixels 0-15 x 0-15
  got = np.asarray(masked_conv.masked_features(tokenizer, clips, visible))[0, 0, 0, 0]
  alone = np.asarray(tokenizer.features(clips[:, :4, :16, :16]))[0, 0, 0, 0]
  assert np.abs(alone).max() > 0.1
  np.testing.assert_allclose(got, alone, atol=1e-4)
