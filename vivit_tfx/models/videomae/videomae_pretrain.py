"""VideoMAE masked-autoencoder pre-training (Tong et al., NeurIPS 2022) of the ViViT encoder.

Tube masking hides the same spatial tubelet positions on every temporal slice; the encoder
(the fine-tuning model's own tokenizer, positions and blocks) sees the visible tubelets only; a
light decoder with a mask token and fixed sinusoidal positions predicts the pixels of the masked
tubelets; the loss is their mean squared error, each tubelet's pixels normalised per channel
first (`norm_pix_loss`) or not. Patch vectors follow transformers' `VideoMAEForPreTraining`
order: [t, h, w, C] within a tubelet, tubelets time-major.

Through the convolutional tokenizer (the hybrids) the masking reaches the stem
(`masked_conv`: hidden tubelets empty at every layer, as SparK's sparse convolutions), and the
target is what the stem reads: with `conv_input` 'rgb+diff' the pixels and the frame
differences of each hidden tubelet.

Two settings make it a motion objective instead (`mask` 'future', `target` 'motion'): the later
half of the temporal slices hidden, and the target each hidden tubelet's motion map (the
absolute frame difference averaged over channels and MOTION_POOL x MOTION_POOL pixels): the
encoder sees how things moved and predicts where they move next.

Shapes: clips [B, T, H, W, C]; tokens [B, N, D], N = n_t * n_s; mask [B, N] bool (True = hidden).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import posixpath
import tempfile
from typing import Any, Dict, List, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vivit_tfx.models.checkpoints import hf_checkpoint, vit_checkpoint
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import (ConvTokenizer, EncoderBlock, ViViT, replica_uniform,
                                            sinusoid_table)
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import training
from vivit_tfx.models.videomae import masked_conv

MASKS = ('tube', 'future')
TARGETS = ('pixels', 'motion')
MOTION_POOL = 4  # pixels per side of a motion map's cell


@dataclasses.dataclass
class PretrainConfig:
  """The masked autoencoder's own settings (the encoder is the fine-tuning ViViTConfig's)."""
  mask_ratio: float = 0.9       # 'tube': the share of spatial positions hidden
  mask: str = 'tube'            # 'tube' (VideoMAE: the same positions on every temporal slice)
                                # or 'future' (every position of the later half of the slices)
  target: str = 'pixels'        # 'pixels' (a conv stem's: its input, pixels and differences)
                                # or 'motion' (each tubelet's motion map, `motion_map`)
  decoder_hidden_size: int = 32
  decoder_num_layers: int = 2
  decoder_num_heads: int = 2
  decoder_mlp_dim: int = 64
  norm_pix_loss: bool = True
  # Added to each tubelet's variance before it divides (norm_pix_loss): 0 is transformers'
  # VideoMAE; above 0 a flat tubelet (still background, its frame differences) keeps a small
  # target instead of its noise scaled to unit variance (clips are standardised per channel).
  norm_pix_floor: float = 0.0
  # Targets are built from clips * pixel_std + pixel_mean (transformers: ImageNet statistics);
  # the pipeline's clips are already normalised per channel, so identity by default.
  pixel_mean: Tuple[float, ...] = (0.0, 0.0, 0.0)
  pixel_std: Tuple[float, ...] = (1.0, 1.0, 1.0)
  # 5e-4: through the conv stem at 1.5e-3 the loss stayed on its plateau (≈ 1: the mean
  # tubelet) for all 800 steps in 5 of 13 runs, and at 5e-3 in the one run tried (README,
  # "Hard synthetic benchmark"); the runs that left it learned the cue more often.
  learning_rate: float = 5e-4
  warmup_steps: int = 40
  weight_decay: float = 0.05
  batch_size: int = 16
  checkpoint: str = ''          # dir to continue from: transformers VideoMAEForPreTraining,
                                # or a PretrainTrainer model of this project (`load_checkpoint`)

  def __post_init__(self):
    self.pixel_mean, self.pixel_std = tuple(self.pixel_mean), tuple(self.pixel_std)
    if not 0.0 <= self.norm_pix_floor < float('inf'):
      raise ValueError(f'norm_pix_floor must be ≥ 0, got {self.norm_pix_floor}')
    if not 0.0 < self.mask_ratio < 1.0:
      raise ValueError(f'mask_ratio must be within (0, 1), got {self.mask_ratio}')
    for name, allowed in (('mask', MASKS), ('target', TARGETS)):
      if getattr(self, name) not in allowed:
        raise ValueError(f'{name} must be one of {", ".join(allowed)}, got '
                         f'{getattr(self, name)!r}')
    if self.decoder_hidden_size % self.decoder_num_heads:
      raise ValueError(f'decoder_hidden_size {self.decoder_hidden_size} is not divisible by '
                       f'decoder_num_heads {self.decoder_num_heads}')

  def to_dict(self) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'PretrainConfig':
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f'unknown pre-training config keys: {sorted(unknown)}')
    return cls(**d)


def masked_per_slice(n_s: int, ratio: float) -> int:
  """Spatial positions hidden on every temporal slice (VideoMAE: int(ratio * n_s))."""
  return int(ratio * n_s)


def tube_mask(batch: int, token_grid: Tuple[int, int, int], ratio: float,
              seed=None) -> tf.Tensor:
  """Random tube mask [B, N] bool: per clip, exactly int(ratio * n_s) spatial positions,
  hidden on all n_t temporal slices (each replica its own, `replica_uniform`)."""
  n_t, n_h, n_w = token_grid
  n_s = n_h * n_w
  noise = replica_uniform((batch, n_s), seed)  # [B, n_s]
  ranks = ops.argsort(ops.argsort(noise, axis=-1), axis=-1)
  spatial = ranks < masked_per_slice(n_s, ratio)  # [B, n_s]
  return ops.reshape(ops.tile(spatial[:, None, :], (1, n_t, 1)), (batch, n_t * n_s))


def future_mask(batch: int, token_grid: Tuple[int, int, int]) -> tf.Tensor:
  """[B, N] bool: every position of the later n_t // 2 temporal slices hidden."""
  n_t, n_h, n_w = token_grid
  hidden = np.arange(n_t) >= n_t - n_t // 2  # [n_t]
  mask = np.repeat(hidden, n_h * n_w)[None]  # [1, N], time-major
  # reshape: a tile by a traced batch size loses N, which the decoder's split needs static
  return ops.reshape(ops.tile(ops.convert_to_tensor(mask), (batch, 1)), (-1, mask.shape[1]))


def split_order(mask) -> tf.Tensor:
  """Token indices [B, N]: the visible ones in order, then the hidden ones in order (the
  order of transformers' `x[~mask]` and `x[mask]`)."""
  n = ops.shape(mask)[1]
  key = ops.cast(mask, 'int32') * n + ops.arange(n, dtype='int32')[None]
  return ops.argsort(key, axis=-1)


def patchify(clips, tubelet_size) -> tf.Tensor:
  """[B, T, H, W, C] → [B, N, t*h*w, C], tubelets time-major, pixels [t, h, w] inside."""
  t, h, w = tubelet_size
  _, frames, height, width, c = clips.shape
  x = ops.reshape(clips, (-1, frames // t, t, height // h, h, width // w, w, c))
  x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))  # [B, n_t, n_h, n_w, t, h, w, C]
  return ops.reshape(x, (-1, (frames // t) * (height // h) * (width // w), t * h * w, c))


def motion_map(clips, config: PretrainConfig) -> tf.Tensor:
  """[B, T, H, W, C] → [B, T, H/p, W/p, 1] (p = MOTION_POOL): each frame's absolute difference
  from the previous one (zero for the first), averaged over channels and p x p pixels, in the
  units of clips * pixel_std + pixel_mean."""
  std = ops.convert_to_tensor(np.array(config.pixel_std, 'float32'))
  pixels = ops.cast(clips, 'float32') * std
  steps = ops.mean(ops.abs(pixels[:, 1:] - pixels[:, :-1]), axis=-1)  # [B, T-1, H, W]
  steps = ops.concatenate([ops.zeros_like(steps[:, :1]), steps], axis=1)
  _, t, h, w = steps.shape
  p = MOTION_POOL
  cells = ops.reshape(steps, (-1, t, h // p, p, w // p, p))
  return ops.mean(cells, axis=(3, 5))[..., None]


def targets(clips, config: PretrainConfig, tubelet_size, differences: bool = False
            ) -> tf.Tensor:
  """Every tubelet's pixel vector [B, N, t*h*w*C']: un-normalised with (pixel_mean, pixel_std),
  with `differences` each frame's difference from the previous one as C more channels
  (C' = 2C, `ConvTokenizer.with_differences`), then (norm_pix_loss) standardised per tubelet
  and channel (centred, divided by sqrt(unbiased variance + norm_pix_floor) + 1e-6).
  With `target` 'motion': every tubelet's motion map
  [B, N, t*(h/p)*(w/p)], not standardised."""
  if config.target == 'motion':
    t, h, w = tubelet_size
    cells = patchify(motion_map(clips, config), (t, h // MOTION_POOL, w // MOTION_POOL))
    return ops.reshape(cells, (-1, cells.shape[1], cells.shape[2]))
  mean = ops.convert_to_tensor(np.array(config.pixel_mean, 'float32'))
  std = ops.convert_to_tensor(np.array(config.pixel_std, 'float32'))
  pixels = ops.cast(clips, 'float32') * std + mean
  if differences:
    pixels = ConvTokenizer.with_differences(pixels)
  patches = patchify(pixels, tubelet_size)  # [B, N, P, C']
  if config.norm_pix_loss:
    mean, scale = tubelet_statistics(patches, config.norm_pix_floor)
    patches = (patches - mean) / scale
  return ops.reshape(patches, (-1, patches.shape[1], patches.shape[2] * patches.shape[3]))


def tubelet_statistics(patches, floor: float):
  """norm_pix_loss' per-tubelet statistics: [B, N, P, C] → each tubelet and channel's mean
  and the scale it is divided by, sqrt(unbiased variance + floor) + 1e-6, each [B, N, 1, C]."""
  mean = ops.mean(patches, axis=2, keepdims=True)
  var = ops.sum(ops.square(patches - mean), axis=2, keepdims=True) / (patches.shape[2] - 1)
  return mean, ops.sqrt(var + floor) + 1e-6


def check_encoder(c: ViViTConfig, config: PretrainConfig) -> None:
  """Raises ValueError where this encoder cannot pre-train with these settings (the pipeline
  asks before any data is touched, the pretrainer again when built)."""
  if c.variant != 'spatiotemporal' or c.classifier == 'token':
    raise ValueError('VideoMAE pre-training needs the joint space-time encoder without a CLS '
                     f"token (variant 'spatiotemporal', classifier 'gap' or 'gap_fc_norm'), got "
                     f'{c.variant!r}, {c.classifier!r}')
  if c.tokenizer == 'conv' and c.conv_norm != 'group':
    raise ValueError("masked pre-training through the conv tokenizer needs conv_norm 'group' "
                     f"(statistics of each clip's visible cells), got {c.conv_norm!r}")
  if config.target == 'motion' and any(v % MOTION_POOL for v in c.tubelet_size[1:]):
    raise ValueError(f'a motion target needs tubelets of a multiple of {MOTION_POOL} pixels '
                     f'a side, got {c.tubelet_size}')
  if config.mask == 'future' and c.token_grid[0] < 2:
    raise ValueError(f'a future mask needs 2 or more temporal slices, got {c.token_grid[0]}')


@keras.saving.register_keras_serializable('vivit')
class VideoMAEPretrainer(keras.Model):
  """Encoder (the wrapped ViViT's tokenizer, positions, blocks, final norm) on the visible
  tubelets + decoder → predicted pixels of the hidden tubelets [B, n_hidden, t*h*w*C'] (C' = C,
  or 2C: a conv tokenizer's pixels and frame differences).

  `train_step` draws a mask per clip (`random_mask`) and minimises `loss`; fit on clips (no
  labels).
  """

  def __init__(self, vivit: ViViT, config: PretrainConfig, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    c = vivit.config
    check_encoder(c, config)
    self.conv = c.tokenizer == 'conv'
    # What the decoder predicts per hidden tubelet: the pixels, or all the conv stem reads.
    self.differences = self.conv and c.conv_input == 'rgb+diff'
    self.vivit, self.config = vivit, config
    self.token_grid = c.token_grid
    t, h, w = c.tubelet_size
    d = config.decoder_hidden_size
    self.encoder_to_decoder = layers.Dense(d, use_bias=False, name='encoder_to_decoder')
    # The encoder's per-token final norm; a model pooled with fc_norm has none of its own.
    self.encoder_norm = vivit.encoder.norm or layers.LayerNormalization(
        epsilon=c.layer_norm_eps, name='encoder_norm')
    # Decoder blocks: the encoder's block (activation, norm eps, q/k/v biases) at width d.
    self.decoder_blocks = [
        EncoderBlock(d, config.decoder_num_heads, config.decoder_mlp_dim, seed=2000 + i,
                     activation=c.activation, layer_norm_eps=c.layer_norm_eps,
                     qkv_bias=c.qkv_bias, name=f'decoder_block_{i}')
        for i in range(config.decoder_num_layers)]
    self.decoder_norm = layers.LayerNormalization(epsilon=1e-5, name='decoder_norm')
    self.decoder_head = layers.Dense(
        t * (h // MOTION_POOL) * (w // MOTION_POOL) if config.target == 'motion' else
        t * h * w * c.channels * (2 if self.differences else 1), name='decoder_head')
    self.decoder_positions = ops.convert_to_tensor(sinusoid_table(c.num_tokens, d)[None])
    self.mask_seed = keras.random.SeedGenerator(seed)
    self.loss_tracker = keras.metrics.Mean(name='loss')

  def build(self, input_shape=None):
    c, d = self.vivit.config, self.config.decoder_hidden_size
    self.mask_token = self.add_weight(name='mask_token', shape=(1, 1, d), initializer=(
        keras.initializers.TruncatedNormal(stddev=0.02)))
    self.encoder_to_decoder.build((None, None, c.hidden_size))
    if not self.encoder_norm.built:
      self.encoder_norm.build((None, None, c.hidden_size))
    for block in self.decoder_blocks:
      block.build((None, c.num_tokens, d))
    self.decoder_norm.build((None, None, d))
    self.decoder_head.build((None, None, d))
    self.built = True

  @property
  def n_hidden(self) -> int:
    n_t, n_h, n_w = self.token_grid
    if self.config.mask == 'future':
      return n_t // 2 * n_h * n_w
    return n_t * masked_per_slice(n_h * n_w, self.config.mask_ratio)

  def random_mask(self, batch: int) -> tf.Tensor:
    if self.config.mask == 'future':
      return future_mask(batch, self.token_grid)
    return tube_mask(batch, self.token_grid, self.config.mask_ratio, self.mask_seed)

  def tokens(self, clips, mask) -> tf.Tensor:
    """[B, T, H, W, C], mask [B, N] → tokens [B, N, D]; through a conv tokenizer the visible
    ones see no hidden pixel (`masked_conv`), the hidden ones are empty."""
    tokenizer = self.vivit.tokenizer
    if not self.conv:
      return tokenizer(clips)
    visible = ops.reshape(1.0 - ops.cast(mask, 'float32'), (-1, *self.token_grid))
    return tokenizer.tokens(masked_conv.masked_features(tokenizer, clips, visible))

  def encode_visible(self, clips, mask, training=None):
    """[B, T, H, W, C], mask [B, N] → encoder output of the visible tubelets [B, N_v, D]."""
    encoder = self.vivit.encoder
    order = split_order(mask)
    x = encoder.position(self.tokens(clips, mask))  # [B, N, D]
    n_visible = self.vivit.config.num_tokens - self.n_hidden
    x = ops.take_along_axis(x, order[:, :n_visible, None], axis=1)  # [B, N_v, D]
    x = encoder.drop(x, training=training)
    for block in encoder.blocks:
      x = block(x, training=training)
    return self.encoder_norm(x)

  def call(self, clips, mask=None, training=None):
    """Predicted pixels of the hidden tubelets [B, n_hidden, t*h*w*C], hidden tubelets in
    token order. `mask` [B, N] bool (default: a random tube mask)."""
    if mask is None:
      mask = self.random_mask(ops.shape(clips)[0])
    order = split_order(mask)
    x = self.encoder_to_decoder(self.encode_visible(clips, mask, training))  # [B, N_v, d]
    positions = ops.take_along_axis(
        ops.broadcast_to(self.decoder_positions, (ops.shape(clips)[0],) +
                         tuple(self.decoder_positions.shape[1:])),
        order[:, :, None], axis=1)  # [B, N, d], visible then hidden
    n_visible = x.shape[1]
    x = ops.concatenate([x + positions[:, :n_visible],
                         ops.cast(self.mask_token, x.dtype) + positions[:, n_visible:]], axis=1)
    for block in self.decoder_blocks:
      x = block(x, training=training)
    return self.decoder_head(self.decoder_norm(x[:, n_visible:]))

  def loss_on(self, clips, mask, training=None):
    """Mean squared error on the hidden tubelets' (normalised) pixels; also the logits."""
    logits = self(clips, mask=mask, training=training)
    order = split_order(mask)[:, -self.n_hidden:]
    labels = ops.take_along_axis(
        targets(clips, self.config, self.vivit.config.tubelet_size, self.differences),
        order[:, :, None], axis=1)
    return ops.mean(ops.square(ops.cast(logits, 'float32') - labels)), logits

  def train_step(self, data):
    clips = data[0] if isinstance(data, tuple) else data
    mask = self.random_mask(tf.shape(clips)[0])
    with tf.GradientTape() as tape:
      loss, _ = self.loss_on(clips, mask, training=True)
      scaled = self.optimizer.scale_loss(loss)  # float16: the loss-scaled gradient
    grads = tape.gradient(scaled, self.trainable_variables)
    # The fine-tuning step's update: under R replicas the mean gradient, clipped once.
    training.apply_replica_mean(self.optimizer, grads, self.trainable_variables)
    self.loss_tracker.update_state(loss)
    return {'loss': self.loss_tracker.result(), 'step_loss': loss}

  def test_step(self, data):
    clips = data[0] if isinstance(data, tuple) else data
    loss, _ = self.loss_on(clips, self.random_mask(tf.shape(clips)[0]))
    self.loss_tracker.update_state(loss)
    return {'loss': self.loss_tracker.result()}

  @property
  def metrics(self):
    return [self.loss_tracker]

  def reconstruct(self, clips, mask) -> Dict[str, np.ndarray]:
    """For inspection: masked input, reconstruction and original, each [B, T, H, W, C], in the
    clips' (normalised) units; reconstructed tubelets are de-standardised with the original's
    per-tubelet statistics when norm_pix_loss (the pixels of a pixels-and-differences
    prediction). With a motion target, the motion maps [B, T, H/p, W/p, 3] (grey) instead."""
    t, h, w = self.vivit.config.tubelet_size
    logits = ops.convert_to_numpy(self(clips, mask=mask))
    normalised = self.config.norm_pix_loss
    if self.config.target == 'motion':
      clips = np.repeat(ops.convert_to_numpy(motion_map(clips, self.config)), 3, axis=-1)
      h, w, normalised = h // MOTION_POOL, w // MOTION_POOL, False
    b, frames, height, width, c = clips.shape
    patches = ops.convert_to_numpy(patchify(clips, (t, h, w)))  # [B, N, P, C]
    mask = ops.convert_to_numpy(mask)
    predicted = patches.copy()
    hidden = logits.reshape(b, -1, t * h * w, logits.shape[-1] // (t * h * w))[..., :c]
    hidden = np.broadcast_to(hidden, hidden.shape[:-1] + (c,))  # a motion map: grey
    if normalised:
      mean, std = (ops.convert_to_numpy(v) for v in
                   tubelet_statistics(patches, self.config.norm_pix_floor))
      hidden = hidden * std[mask].reshape(b, -1, 1, c) + mean[mask].reshape(b, -1, 1, c)
    predicted[mask] = hidden.reshape(-1, t * h * w, c)
    masked = patches.copy()
    masked[mask] = 0.0
    unpatch = lambda p: p.reshape(b, frames // t, height // h, width // w, t, h, w, c).transpose(
        0, 1, 4, 2, 5, 3, 6, 7).reshape(b, frames, height, width, c)
    return {'masked': unpatch(masked), 'reconstruction': unpatch(predicted),
            'original': np.asarray(clips)}


def build_pretrainer(vivit_config: ViViTConfig, config: PretrainConfig,
                     seed: int = 0) -> VideoMAEPretrainer:
  """The pre-training model around a freshly built (and initialised) ViViT encoder."""
  model = VideoMAEPretrainer(initialised_vivit(vivit_config), config, seed=seed, name='videomae')
  model.build()
  return model


# Files of a pre-training model directory (the Trainer's serving_model_dir).
ENCODER_WEIGHTS = 'encoder.weights.h5'        # the ViViT (encoder + untouched head)
PRETRAINER_WEIGHTS = 'pretrainer.weights.h5'  # encoder + decoder (`load_checkpoint`)
CONFIG_FILE = 'pretrain_config.json'          # {'vivit': ..., 'pretrain': ...}
HISTORY_FILE = 'history.json'                 # {'step': [...], 'loss': [...]}
RECONSTRUCTIONS_FILE = 'reconstructions.npz'  # masked, reconstruction, original [B,T,H,W,C]


def _save_weights(layer, path: str) -> None:
  """Keras writes .weights.h5 locally; tf.io.gfile carries it to `path` (any URI)."""
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, os.path.basename(path))
    layer.save_weights(local)
    tf.io.gfile.copy(local, path, overwrite=True)


def _load_weights(layer, path: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, os.path.basename(path))
    tf.io.gfile.copy(path, local)
    layer.load_weights(local)


def save(model: VideoMAEPretrainer, directory: str, history: Dict[str, list],
         reconstructions: Dict[str, np.ndarray]) -> None:
  """Writes the pre-training model directory (files above) through tf.io.gfile."""
  tf.io.gfile.makedirs(directory)
  _save_weights(model.vivit, os.path.join(directory, ENCODER_WEIGHTS))
  _save_weights(model, os.path.join(directory, PRETRAINER_WEIGHTS))
  for name, value in ((CONFIG_FILE, {'vivit': model.vivit.config.to_dict(),
                                     'pretrain': model.config.to_dict()}),
                      (HISTORY_FILE, history)):
    with tf.io.gfile.GFile(os.path.join(directory, name), 'w') as f:
      json.dump(value, f)
  buffer = io.BytesIO()  # numpy's zip writer seeks back: build in memory, then write
  np.savez_compressed(buffer, **reconstructions)
  with tf.io.gfile.GFile(os.path.join(directory, RECONSTRUCTIONS_FILE), 'wb') as f:
    f.write(buffer.getvalue())


def _made_with(directory: str) -> Dict[str, Any]:
  """A pre-training directory's settings: {'vivit': ViViTConfig dict, 'pretrain': ...}."""
  with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE)) as f:
    return json.load(f)


def _architecture_differences(made: Dict[str, Any], config: ViViTConfig) -> List[str]:
  """The encoder architecture fields in which a saved ViViTConfig dict differs from `config`."""
  architecture = ViViTConfig.from_dict(made).architecture
  return [k for k, v in dataclasses.asdict(architecture).items() if getattr(config, k) != v]


def load_encoder(vivit: ViViT, directory: str) -> Dict[str, str]:
  """Loads a pre-training directory's encoder into `vivit` (built with the same architecture);
  returns the lineage record (`init_source`)."""
  path = os.path.join(directory, ENCODER_WEIGHTS)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{directory}: no {ENCODER_WEIGHTS} (not a pre-training model)')
  differ = _architecture_differences(_made_with(directory)['vivit'], vivit.config)
  if differ:
    raise ValueError(f'{directory}: pre-trained with another architecture ({", ".join(differ)} '
                     'differ)')
  _load_weights(vivit, path)
  return {'pretrained_encoder': directory}


# The decoder's settings, and their names in a transformers VideoMAEForPreTraining config.json.
DECODER_FIELDS = ('decoder_hidden_size', 'decoder_num_layers', 'decoder_num_heads',
                  'decoder_mlp_dim')
_HF_DECODER = ('decoder_hidden_size', 'decoder_num_hidden_layers',
               'decoder_num_attention_heads', 'decoder_intermediate_size')


def _hf_pretraining_spec(path: str) -> hf_checkpoint.HFCheckpoint:
  spec = hf_checkpoint.load_hf_config(path)
  if spec.family != 'videomae-pretraining':
    raise hf_checkpoint.CheckpointMismatch(f'{path}: a {spec.family} checkpoint, not '
                                           'VideoMAEForPreTraining (no decoder)')
  return spec


def checkpoint_settings(path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """A pre-training checkpoint's own settings, (encoder architecture, decoder): a PretrainTrainer
  model directory's pretrain_config.json, or a transformers VideoMAEForPreTraining config.json."""
  if tf.io.gfile.exists(os.path.join(path, PRETRAINER_WEIGHTS)):
    made = _made_with(path)
    return (dataclasses.asdict(ViViTConfig.from_dict(made['vivit']).architecture),
            {k: made['pretrain'][k] for k in DECODER_FIELDS})
  spec = _hf_pretraining_spec(path)
  missing = [k for k in _HF_DECODER if k not in spec.config]
  if missing:
    raise hf_checkpoint.CheckpointMismatch(
        f'{posixpath.join(path, "config.json")}: no {", ".join(missing)}')
  return dict(spec.architecture), {k: spec.config[h] for k, h in zip(DECODER_FIELDS, _HF_DECODER)}


def with_checkpoint_decoder(overrides: Dict[str, Any]) -> Dict[str, Any]:
  """--pretrain-overrides with the decoder settings of its `checkpoint` filled in; a value that
  contradicts the checkpoint is one line (its weights could not be loaded)."""
  path = overrides.get('checkpoint')
  if not path:
    return overrides
  decoder = checkpoint_settings(path)[1]
  clash = [k for k in DECODER_FIELDS if k in overrides and overrides[k] != decoder[k]]
  if clash:
    raise ValueError(
        f'--pretrain-overrides {", ".join(f"{k}={overrides[k]!r}" for k in clash)} conflicts '
        f'with the pre-training checkpoint {path} '
        f'({", ".join(f"{k}={decoder[k]!r}" for k in clash)}); leave them out to use its own')
  return {**decoder, **overrides}


def load_checkpoint(model: VideoMAEPretrainer, path: str) -> Dict[str, str]:
  """Continues pre-training from `path`: a PretrainTrainer model directory of this project
  (encoder and decoder, `PRETRAINER_WEIGHTS`; its encoder and decoder settings must be the
  model's) or a transformers VideoMAEForPreTraining directory. Returns the lineage record."""
  weights = os.path.join(path, PRETRAINER_WEIGHTS)
  if not tf.io.gfile.exists(weights):
    return load_hf_pretraining(model, path)
  made = _made_with(path)
  differ = [k for k in DECODER_FIELDS if made['pretrain'][k] != getattr(model.config, k)]
  differ += _architecture_differences(made['vivit'], model.vivit.config)
  if differ:
    raise ValueError(f'{path}: pre-trained with other settings ({", ".join(differ)} differ)')
  _load_weights(model, weights)
  return {'pretrained_from': path}


def load_hf_pretraining(model: VideoMAEPretrainer, path: str) -> Dict[str, str]:
  """Loads a transformers VideoMAEForPreTraining directory: the encoder (`hf_checkpoint`),
  its final norm, and the decoder (`encoder_to_decoder`, `mask_token`, blocks, norm, head).
  Returns the lineage record."""
  spec = _hf_pretraining_spec(path)
  source = hf_checkpoint.init_from_hf(model.vivit, path)
  hf, _ = hf_checkpoint.read_weights(path)
  c = spec.config
  # The decoder's blocks are VideoMAE blocks: read them as an encoder of the decoder's shape.
  blocks = {k.replace('decoder.decoder_layers.', 'videomae.encoder.layer.'): v
            for k, v in hf.items() if k.startswith('decoder.decoder_layers.')}
  blocks.update({k: hf[k] for k in ('videomae.layernorm.weight', 'videomae.layernorm.bias')})
  decoder_spec = dataclasses.replace(spec, config={
      **c, 'num_attention_heads': c['decoder_num_attention_heads'],
      'num_hidden_layers': c['decoder_num_hidden_layers']})
  # pylint: disable=protected-access
  loader = vit_checkpoint.Loader(hf_checkpoint._canonical(decoder_spec, blocks).arrays, path)
  vit_checkpoint.load_blocks(loader, _Blocks(model.decoder_blocks, model.encoder_norm))
  extra = {'to_decoder/kernel': hf['encoder_to_decoder.weight'].T,
           'mask_token': hf['mask_token'], 'decoder_norm/scale': hf['decoder.norm.weight'],
           'decoder_norm/bias': hf['decoder.norm.bias'],
           'decoder_head/kernel': hf['decoder.head.weight'].T,
           'decoder_head/bias': hf['decoder.head.bias']}
  loader = vit_checkpoint.Loader(extra, path)
  loader.assign(model.encoder_to_decoder.kernel, 'to_decoder/kernel')
  loader.assign(model.mask_token, 'mask_token')
  loader.norm(model.decoder_norm, 'decoder_norm/')
  loader.dense(model.decoder_head, 'decoder_head/')
  return source


@dataclasses.dataclass
class _Blocks:
  """The decoder seen as an encoder (`blocks`, final `norm`) by `vit_checkpoint.load_blocks`."""
  blocks: list
  norm: Any
