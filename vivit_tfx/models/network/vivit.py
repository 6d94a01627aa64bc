"""ViViT (Arnab et al., ICCV 2021) in Keras 3: tokenizers, encoder blocks and the four variants.

Shapes: clips [B, T, H, W, C]; tokens [B, N, D] with N = n_t * n_h * n_w ordered time-major
(token index = i_t * n_h * n_w + i_h * n_w + i_w).
"""
from __future__ import annotations

import contextlib
import math
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vivit_tfx.models.network.vivit_config import ViViTConfig

_PACKAGE = 'vivit'


@keras.saving.register_keras_serializable(_PACKAGE)
class TubeletEmbedding(layers.Layer):
  """Non-overlapping 3D patches → tokens: Conv3D, kernel = stride = (t, h, w), time first.

  [B, T, H, W, C] → [B, n_t * n_h * n_w, D]. With t = 1 this is the paper's uniform frame
  sampling tokenizer (a 2D patch embedding of every frame).
  """

  def __init__(self, hidden_size: int, tubelet_size, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.tubelet_size = tuple(tubelet_size)
    self.projection = layers.Conv3D(hidden_size, kernel_size=self.tubelet_size,
                                    strides=self.tubelet_size, padding='valid',
                                    name='projection')

  def build(self, input_shape):
    self.projection.build(input_shape)

  def call(self, clips):
    x = self.projection(clips)  # [B, n_t, n_h, n_w, D]
    grid = x.shape[1:4]
    n = int(np.prod(grid)) if None not in grid else -1  # static when H and W are
    return ops.reshape(x, (-1, n, self.hidden_size))  # [B, N, D]

  def get_config(self):
    return {**super().get_config(), 'hidden_size': self.hidden_size,
            'tubelet_size': self.tubelet_size}


@keras.saving.register_keras_serializable(_PACKAGE)
class ConvTokenizer(layers.Layer):
  """A small 3D CNN → tokens (the ViT paper's hybrid, §3.1, with a video stem).

  A (1, 3, 3) stem convolution at `strides[0]`; per width a 3x3x3 convolution, norm ('batch':
  statistics synchronised over tf.distribute replicas; 'group': per clip), ReLU and a max-pool
  of `strides[i + 1]`; a linear projection of each cell to D. `inputs` 'rgb+diff' gives the
  stem each frame's difference from the previous one as C more channels (zero for the first
  frame): how much moved, and how suddenly, without having to find it. [B, T, H, W, C] →
  [B, n_t * n_h * n_w, D], (n_t, n_h, n_w) = (T, H, W) / the strides' product, time-major as
  TubeletEmbedding's tokens (token i covers the pixels a tubelet of that size would).
  """

  def __init__(self, hidden_size: int, widths, strides, norm: str = 'batch',
               inputs: str = 'rgb', **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.norm, self.inputs = hidden_size, norm, inputs
    self.widths = tuple(widths)
    self.strides = tuple(tuple(s) for s in strides)
    self.stem = layers.Conv3D(self.widths[0], (1, 3, 3), strides=self.strides[0],
                              padding='same', name='stem')
    self.convs = [layers.Conv3D(w, 3, padding='same', use_bias=False, name=f'conv_{i}')
                  for i, w in enumerate(self.widths)]
    self.norms = [layers.BatchNormalization(synchronized=True, name=f'norm_{i}')
                  if norm == 'batch' else
                  layers.GroupNormalization(groups=math.gcd(8, w), name=f'norm_{i}')
                  for i, w in enumerate(self.widths)]
    # float32 pools: TensorFlow has no float16 MaxPool3D on CPUs (the next layer casts back).
    self.pools = [layers.MaxPool3D(s, dtype='float32', name=f'pool_{i}')
                  for i, s in enumerate(self.strides[1:])]
    self.projection = layers.Dense(hidden_size, name='projection')

  def build(self, input_shape):
    shape = tuple(input_shape)
    if self.inputs == 'rgb+diff':
      shape = shape[:-1] + (2 * shape[-1],)
    self.stem.build(shape)
    shape = self.stem.compute_output_shape(shape)
    for conv, norm, pool in zip(self.convs, self.norms, self.pools):
      conv.build(shape)
      shape = conv.compute_output_shape(shape)
      norm.build(shape)
      shape = pool.compute_output_shape(shape)
    self.projection.build(shape)

  @staticmethod
  def with_differences(clips):
    """[B, T, H, W, C] → [B, T, H, W, 2C]: the frames, then each one minus the previous
    (zeros for the first)."""
    steps = clips[:, 1:] - clips[:, :-1]  # [B, T-1, H, W, C]
    steps = ops.concatenate([ops.zeros_like(clips[:, :1]), steps], axis=1)
    return ops.concatenate([clips, steps], axis=-1)

  def features(self, clips, training=None):
    """The CNN's output before the projection: [B, T, H, W, C] → [B, n_t, n_h, n_w, C_last]."""
    if self.inputs == 'rgb+diff':
      clips = self.with_differences(clips)
    x = self.stem(clips)  # [B, T/s_t, H/s_h, W/s_w, widths[0]]
    for conv, norm, pool in zip(self.convs, self.norms, self.pools):
      x = pool(ops.relu(norm(conv(x), training=training)))
    return x

  def call(self, clips, training=None):
    return self.tokens(self.features(clips, training))

  def tokens(self, features):
    """[B, n_t, n_h, n_w, C] CNN features → [B, N, D] tokens."""
    x = self.projection(features)  # [B, n_t, n_h, n_w, D]
    grid = x.shape[1:4]
    n = int(np.prod(grid)) if None not in grid else -1
    return ops.reshape(x, (-1, n, self.hidden_size))  # [B, N, D]

  def get_config(self):
    return {**super().get_config(), 'hidden_size': self.hidden_size, 'widths': self.widths,
            'strides': self.strides, 'norm': self.norm, 'inputs': self.inputs}


def sinusoid_table(n: int, d: int) -> np.ndarray:
  """Fixed positions [n, d]: sin on even, cos on odd features, angle pos / 10000^(2(j//2)/d)
  (VideoMAE's interleaved table)."""
  angle = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None]
  angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
  return angle.astype(np.float32)


@keras.saving.register_keras_serializable(_PACKAGE)
class PositionalEmbedding(layers.Layer):
  """Positional embedding whose table is sized in build() from the real token count.

  'learned': one [1, N, D] table. 'factorised': a spatial [n_s, D] plus a temporal [n_t, D]
  table, summed (needs `grid=(n_t, n_s)`). 'sinusoidal': a fixed [N, D] table (no weights).
  'per_frame' (TimeSformer): a spatial [1, 1 + n_s, D] table (CLS slot first, when the input
  has a CLS token) added to every frame, plus a temporal [1, n_t, D] table added to patches.
  """

  def __init__(self, kind: str = 'learned', grid=None, **kwargs):
    super().__init__(**kwargs)
    self.kind = kind
    self.grid = tuple(grid) if grid else None

  def build(self, input_shape):
    _, n, d = input_shape
    init = keras.initializers.RandomNormal(stddev=0.02)
    if self.kind in ('factorised', 'per_frame'):
      n_t, n_s = self.grid
      self.cls_slot = int(n - n_t * n_s)
      if self.cls_slot not in ((0, 1) if self.kind == 'per_frame' else (0,)):
        raise ValueError(f'{self.kind} positional grid {self.grid} gives {n_t * n_s} tokens, '
                         f'input has {n}')
      spatial = (1, 1, n_s, d) if self.kind == 'factorised' else (1, self.cls_slot + n_s, d)
      temporal = (1, n_t, 1, d) if self.kind == 'factorised' else (1, n_t, d)
      self.spatial = self.add_weight(name='pos_embedding_spatial', shape=spatial,
                                     initializer=init)
      self.temporal = self.add_weight(name='pos_embedding_temporal', shape=temporal,
                                      initializer=init)
    elif self.kind == 'sinusoidal':
      self.fixed = sinusoid_table(n, d)[None]  # [1, N, D], not a weight
    else:
      self.table = self.add_weight(name='pos_embedding', shape=(1, n, d), initializer=init)
    self.num_tokens = n

  def _per_frame(self, tokens):  # [B, c + n_t * n_s, D] → same
    n_t, n_s = self.grid
    c, d = self.cls_slot, tokens.shape[-1]
    spatial = ops.cast(self.spatial, tokens.dtype)
    patches = ops.reshape(tokens[:, c:], (-1, n_t, n_s, d)) + spatial[:, None, c:]
    patches = patches + ops.cast(self.temporal, tokens.dtype)[:, :, None]
    patches = ops.reshape(patches, (-1, n_t * n_s, d))
    return ops.concatenate([tokens[:, :c] + spatial[:, :c], patches], axis=1) if c else patches

  def call(self, tokens):  # [B, N, D] → [B, N, D]
    if tokens.shape[1] is not None and tokens.shape[1] != self.num_tokens:
      raise ValueError(f'positional embedding has {self.num_tokens} positions, the input has '
                       f'{tokens.shape[1]} tokens')
    if self.kind == 'per_frame':
      return self._per_frame(tokens)
    if self.kind == 'factorised':
      table = ops.reshape(self.spatial + self.temporal, (1, self.num_tokens, -1))
    elif self.kind == 'sinusoidal':
      table = self.fixed
    else:
      table = self.table
    return tokens + ops.cast(table, tokens.dtype)

  def get_config(self):
    return {**super().get_config(), 'kind': self.kind, 'grid': self.grid}


@keras.saving.register_keras_serializable(_PACKAGE)
class ClassToken(layers.Layer):
  """Prepends a learned CLS token (zero-initialised): [B, N, D] → [B, N + 1, D]."""

  def build(self, input_shape):
    self.token = self.add_weight(name='cls_token', shape=(1, 1, input_shape[-1]),
                                 initializer='zeros')

  def call(self, tokens):
    cls = ops.broadcast_to(ops.cast(self.token, tokens.dtype),
                           (ops.shape(tokens)[0], 1, tokens.shape[-1]))
    return ops.concatenate([cls, tokens], axis=1)


def replica_uniform(shape, seed=None, dtype='float32'):
  """`keras.random.uniform`, but a SeedGenerator draws apart on each replica: under
  tf.distribute its state is mirrored, and every replica would draw the same numbers (the
  same masks for different clips)."""
  replica = tf.distribute.get_replica_context()
  if (not isinstance(seed, keras.random.SeedGenerator) or replica is None
      or replica.num_replicas_in_sync == 1):
    return keras.random.uniform(shape, seed=seed, dtype=dtype)
  offset = tf.stack([tf.constant(0, tf.int64),
                     tf.cast(replica.replica_id_in_sync_group, tf.int64)])
  return tf.random.stateless_uniform(shape, seed=tf.cast(seed.next(), tf.int64) + offset,
                                     dtype=dtype)


@keras.saving.register_keras_serializable(_PACKAGE)
class StochasticDepth(layers.Layer):
  """Drops the whole residual branch per example with probability `rate` while training."""

  def __init__(self, rate: float, seed: int = 1337, **kwargs):
    super().__init__(**kwargs)
    self.rate, self.seed_value = rate, seed
    self.seed = keras.random.SeedGenerator(seed)  # one stream per layer: independent masks

  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
    mask = ops.floor(keep + replica_uniform(shape, self.seed, x.dtype))  # [B, 1, ...]
    return x / keep * mask

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed_value}


@keras.saving.register_keras_serializable(_PACKAGE)
class SelfAttention(layers.Layer):
  """Multi-head self-attention, [B, N, D] → [B, N, D], with named projections `query`, `key`,
  `value` (kernel [D, H, hd], bias [H, hd]) and `out` (kernel [H, hd, D], bias [D]): the
  layouts of Keras' MultiHeadAttention and of ViT checkpoints. `bias` names the projections
  of q/k/v that have one ('qkv', 'qv' as VideoMAE, 'none'); `out` always has one.
  """

  def __init__(self, num_heads: int, head_dim: int, dropout: float = 0.0, bias: str = 'qkv',
               zero_output: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.num_heads, self.head_dim, self.dropout_rate = num_heads, head_dim, dropout
    self.bias, self.zero_output = bias, zero_output
    project = lambda name: layers.EinsumDense(
        'bnd,dhk->bnhk', output_shape=(None, num_heads, head_dim),
        bias_axes='hk' if name[0] in bias else None, kernel_initializer='glorot_uniform',
        name=name)
    self.query, self.key, self.value = project('query'), project('key'), project('value')
    self.out = layers.EinsumDense('bnhk,hkd->bnd', output_shape=(None, num_heads * head_dim),
                                  bias_axes='d',
                                  kernel_initializer='zeros' if zero_output else
                                  'glorot_uniform', name='out')
    self.drop = layers.Dropout(dropout)

  def build(self, input_shape):
    d = input_shape[-1]
    for dense in (self.query, self.key, self.value):
      dense.build((None, None, d))
    self.out.build((None, None, self.num_heads, self.head_dim))

  def project(self, x):
    """[B, N, D] → q (scaled by 1/sqrt(hd)), k, v, each [B, N, H, hd]."""
    scale = ops.cast(1.0 / np.sqrt(self.head_dim), x.dtype)
    return self.query(x) * scale, self.key(x), self.value(x)

  def weights_of(self, scores, training=None):
    """Scores [..., N_q, N_k] → softmax (in float32) with attention dropout."""
    probs = ops.softmax(ops.cast(scores, 'float32'), axis=-1)
    return self.drop(ops.cast(probs, self.compute_dtype), training=training)

  def call(self, x, training=None, return_attention_scores=False):
    q, k, v = self.project(x)
    probs = self.weights_of(ops.einsum('bnhk,bmhk->bhnm', q, k), training)  # [B, H, N, N]
    y = self.out(ops.einsum('bhnm,bmhk->bnhk', probs, v))
    return (y, probs) if return_attention_scores else y

  def get_config(self):
    return {**super().get_config(), 'num_heads': self.num_heads, 'head_dim': self.head_dim,
            'dropout': self.dropout_rate, 'bias': self.bias, 'zero_output': self.zero_output}


@keras.saving.register_keras_serializable(_PACKAGE)
class EncoderBlock(layers.Layer):
  """Pre-LN transformer block: x + MHA(LN(x)); x + MLP(LN(x)) (GELU MLP, dropout, drop-path).

  With `temporal_grid=(n_t, n_s)` it is Model 3's factorised self-attention block. Order
  'space_time' (paper): spatial MHA within each frame, then temporal MHA across frames at each
  position (its output projection zero-initialised, so it starts as identity), then the MLP.
  Order 'time_space' (TimeSformer): temporal MHA on the patches, a `temporal_dense` projection
  (zero-initialised), then spatial MHA within each frame with the CLS token (if any) copied to
  every frame and its outputs averaged over frames, then the MLP. With
  `dot_product_grid=(n_t, n_s)` it is Model 4's factorised dot-product attention: one MHA whose
  first half of the heads attends over space (within a frame), the second half over time.
  """

  def __init__(self, hidden_size, num_heads, mlp_dim, dropout=0.0, attention_dropout=0.0,
               drop_path=0.0, temporal_grid=None, dot_product_grid=None, seed=1337,
               activation='gelu', layer_norm_eps=1e-6, qkv_bias='qkv',
               factorised_order='space_time', **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.num_heads, self.mlp_dim = hidden_size, num_heads, mlp_dim
    self.dropout, self.attention_dropout, self.drop_path = dropout, attention_dropout, drop_path
    self.temporal_grid = tuple(temporal_grid) if temporal_grid else None
    self.dot_product_grid = tuple(dot_product_grid) if dot_product_grid else None
    self.seed, self.activation, self.layer_norm_eps = seed, activation, layer_norm_eps
    self.qkv_bias, self.factorised_order = qkv_bias, factorised_order
    time_space = factorised_order == 'time_space'
    mha = lambda name, zero_output=False: SelfAttention(
        num_heads, hidden_size // num_heads, attention_dropout, qkv_bias, zero_output,
        name=name)
    norm = lambda name: layers.LayerNormalization(epsilon=layer_norm_eps, name=name)
    self.norm_attention = norm('norm_attention')
    self.attention = mha('attention')
    if self.temporal_grid:
      self.norm_temporal = norm('norm_temporal')
      self.temporal_attention = mha('temporal_attention', zero_output=not time_space)
      if time_space:
        self.temporal_dense = layers.Dense(hidden_size, kernel_initializer='zeros',
                                           name='temporal_dense')
    self.norm_mlp = norm('norm_mlp')
    self.mlp_in = layers.Dense(mlp_dim, name='mlp_in')
    self.mlp_out = layers.Dense(hidden_size, name='mlp_out')
    self.drop = layers.Dropout(dropout)
    self.drop_branch = StochasticDepth(drop_path, seed=seed)

  def build(self, input_shape):
    _, n, d = input_shape
    for layer in (self.norm_attention, self.attention, self.norm_mlp, self.mlp_in):
      layer.build(input_shape)
    if self.temporal_grid:
      self.cls_tokens = n - self.temporal_grid[0] * self.temporal_grid[1]  # 0 or 1 (CLS)
      self.temporal_attention.build(input_shape)
      self.norm_temporal.build(input_shape)
      if self.factorised_order == 'time_space':
        self.temporal_dense.build(input_shape)
    self.mlp_out.build((None, n, self.mlp_dim))

  def _branch(self, y, training):
    return self.drop_branch(self.drop(y, training=training), training=training)

  def _self_attention(self, mha, x, training):
    return self._branch(mha(x, training=training), training)

  def _dot_product_attention(self, x, training):
    """Model 4: [B, N, D] → [B, N, D]; heads [0, H/2) over space, [H/2, H) over time."""
    mha, (n_t, n_s) = self.attention, self.dot_product_grid
    heads, head_dim = self.num_heads, self.hidden_size // self.num_heads
    half = heads // 2
    split = lambda t: ops.reshape(t, (-1, n_t, n_s, heads, head_dim))  # [B, n_t, n_s, H, hd]
    q, k, v = (split(t) for t in mha.project(x))
    spatial = mha.weights_of(
        ops.einsum('btshd,btzhd->bthsz', q[..., :half, :], k[..., :half, :]), training)
    spatial = ops.einsum('bthsz,btzhd->btshd', spatial, v[..., :half, :])
    temporal = mha.weights_of(
        ops.einsum('btshd,bushd->bshtu', q[..., half:, :], k[..., half:, :]), training)
    temporal = ops.einsum('bshtu,bushd->btshd', temporal, v[..., half:, :])
    heads_out = ops.concatenate([spatial, temporal], axis=3)  # [B, n_t, n_s, H, hd]
    return mha.out(ops.reshape(heads_out, (-1, n_t * n_s, heads, head_dim)))

  def _space_time(self, x, training):  # [B, n_t * n_s, D] → same
    n_t, n_s = self.temporal_grid
    d = self.hidden_size
    y = ops.reshape(self.norm_attention(x), (-1, n_s, d))  # [B*n_t, n_s, D]
    x = x + ops.reshape(self._self_attention(self.attention, y, training), (-1, n_t * n_s, d))
    y = ops.reshape(self.norm_temporal(x), (-1, n_t, n_s, d))
    y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, n_t, d))  # [B*n_s, n_t, D]
    y = self._self_attention(self.temporal_attention, y, training)
    y = ops.transpose(ops.reshape(y, (-1, n_s, n_t, d)), (0, 2, 1, 3))
    return x + ops.reshape(y, (-1, n_t * n_s, d))

  def _time_space(self, x, training):  # [B, c + n_t * n_s, D] → same (c: 0 or 1 CLS token)
    n_t, n_s = self.temporal_grid
    d = self.hidden_size
    c = self.cls_tokens
    cls, patches = x[:, :c], x[:, c:]
    y = ops.reshape(self.norm_temporal(patches), (-1, n_t, n_s, d))
    y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, n_t, d))  # [B*n_s, n_t, D]
    y = self._self_attention(self.temporal_attention, y, training)
    y = ops.transpose(ops.reshape(y, (-1, n_s, n_t, d)), (0, 2, 1, 3))  # [B, n_t, n_s, D]
    patches = patches + self.temporal_dense(ops.reshape(y, (-1, n_t * n_s, d)))
    y = ops.reshape(patches, (-1, n_s, d))  # [B*n_t, n_s, D]
    if c:  # the CLS token joins every frame's spatial attention
      y = ops.concatenate([ops.reshape(ops.repeat(cls, n_t, axis=1), (-1, 1, d)), y], axis=1)
    y = self._self_attention(self.attention, self.norm_attention(y), training)
    y = ops.reshape(y, (-1, n_t, c + n_s, d))  # [B, n_t, c + n_s, D]
    residual = ops.reshape(y[:, :, c:], (-1, n_t * n_s, d))
    if c:  # CLS outputs averaged over frames
      residual = ops.concatenate([ops.mean(y[:, :, 0], axis=1, keepdims=True), residual], 1)
    return ops.concatenate([cls, patches], axis=1) + residual if c else patches + residual

  def call(self, x, training=None):  # [B, N, D] → [B, N, D]
    if self.dot_product_grid:
      x = x + self._branch(self._dot_product_attention(self.norm_attention(x), training),
                           training)
    elif self.temporal_grid and self.factorised_order == 'time_space':
      x = self._time_space(x, training)
    elif self.temporal_grid:
      x = self._space_time(x, training)
    else:
      x = x + self._self_attention(self.attention, self.norm_attention(x), training)
    y = ops.gelu(self.mlp_in(self.norm_mlp(x)), approximate=self.activation == 'gelu_tanh')
    return x + self._branch(self.mlp_out(self.drop(y, training=training)), training)

  def get_config(self):
    return {**super().get_config(), 'hidden_size': self.hidden_size,
            'num_heads': self.num_heads, 'mlp_dim': self.mlp_dim, 'dropout': self.dropout,
            'attention_dropout': self.attention_dropout, 'drop_path': self.drop_path,
            'temporal_grid': self.temporal_grid, 'dot_product_grid': self.dot_product_grid,
            'seed': self.seed, 'activation': self.activation,
            'layer_norm_eps': self.layer_norm_eps, 'qkv_bias': self.qkv_bias,
            'factorised_order': self.factorised_order}


@keras.saving.register_keras_serializable(_PACKAGE)
class Encoder(layers.Layer):
  """[optional CLS] + positional embedding + dropout + L blocks + final LayerNorm (none with
  classifier 'gap_fc_norm': the model normalises after pooling)."""

  def __init__(self, config_dict, num_layers, class_token, positional='learned', grid=None,
               temporal_grid=None, drop_path_offset=0, dot_product_grid=None, **kwargs):
    super().__init__(**kwargs)
    c = ViViTConfig.from_dict(config_dict)
    self.config_dict, self.num_layers, self.class_token = config_dict, num_layers, class_token
    self.positional, self.grid, self.temporal_grid = positional, grid, temporal_grid
    self.dot_product_grid = dot_product_grid
    self.drop_path_offset = drop_path_offset
    total = c.num_layers + (c.num_temporal_layers if c.variant == 'factorised_encoder' else 0)
    self.cls = ClassToken(name='cls') if class_token else None
    # With a CLS token the 'factorised' table also covers it, so it cannot be factorised.
    kind = 'learned' if class_token and positional == 'factorised' else positional
    self.position = PositionalEmbedding(kind, grid, name='position')
    self.drop = layers.Dropout(c.dropout)
    self.blocks = [
        EncoderBlock(c.hidden_size, c.num_heads, c.mlp_dim, c.dropout, c.attention_dropout,
                     drop_path=c.stochastic_depth * (drop_path_offset + i + 1) / total,
                     temporal_grid=temporal_grid, dot_product_grid=dot_product_grid,
                     seed=1337 + drop_path_offset + i, activation=c.activation,
                     layer_norm_eps=c.layer_norm_eps, qkv_bias=c.qkv_bias,
                     factorised_order=c.factorised_order, name=f'block_{i}')
        for i in range(num_layers)
    ]
    self.norm = (None if c.classifier == 'gap_fc_norm' else
                 layers.LayerNormalization(epsilon=c.layer_norm_eps, name='norm'))

  def build(self, input_shape):
    b, n, d = input_shape
    if self.cls:
      self.cls.build(input_shape)
      n += 1
    self.position.build((b, n, d))
    for block in self.blocks:
      block.build((b, n, d))
    if self.norm:
      self.norm.build((b, n, d))

  def call(self, tokens, training=None):  # [B, N, D] → [B, N(+1), D]
    x = self.cls(tokens) if self.cls else tokens
    x = self.drop(self.position(x), training=training)
    for block in self.blocks:
      x = block(x, training=training)
    return self.norm(x) if self.norm else x

  def get_config(self):
    return {**super().get_config(), 'config_dict': self.config_dict,
            'num_layers': self.num_layers, 'class_token': self.class_token,
            'positional': self.positional, 'grid': self.grid,
            'temporal_grid': self.temporal_grid, 'drop_path_offset': self.drop_path_offset,
            'dot_product_grid': self.dot_product_grid}


def _pool(x, classifier):  # [B, N(+1), D] → [B, D]
  return x[:, 0] if classifier == 'token' else ops.mean(x, axis=1)


@contextlib.contextmanager
def dtype_policy(name: str):
  """Layers constructed inside get the dtype policy `name` ('float32', 'mixed_bfloat16', …)."""
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(name)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable(_PACKAGE)
class ViViT(keras.Model):
  """Video Vision Transformer; `config.variant` picks Model 1, 2, 3 or 4. Outputs logits.

  clips [B, T, H, W, C] float → logits [B, 1] (binary) or [B, n_classes], always float32
  (layers compute in `config.precision`; variables stay float32).
  """

  def __init__(self, config: ViViTConfig, **kwargs):
    if isinstance(config, dict):
      config = ViViTConfig.from_dict(config)
    kwargs.pop('dtype', None)
    super().__init__(dtype=config.precision, **kwargs)
    self.config = config
    with dtype_policy(config.precision):
      self._make_layers(config)

  def _make_layers(self, config: ViViTConfig) -> None:
    c = config
    n_t, n_h, n_w = c.token_grid
    cd = c.to_dict()
    token = c.classifier == 'token'
    self.tokenizer = (ConvTokenizer(c.hidden_size, c.conv_widths, c.conv_strides, c.conv_norm,
                                    c.conv_input, name='conv_tokenizer')
                      if c.tokenizer == 'conv' else
                      TubeletEmbedding(c.hidden_size, c.tubelet_size, name='tubelet_embedding'))
    if c.variant == 'factorised_encoder':
      # Model 2: one spatial encoder shared by every time index, then a temporal encoder.
      self.spatial_encoder = Encoder(cd, c.num_layers, token, 'learned', name='spatial_encoder')
      self.temporal_encoder = Encoder(cd, c.num_temporal_layers, token, 'learned',
                                      drop_path_offset=c.num_layers, name='temporal_encoder')
    else:
      grid = (n_t, n_h * n_w)
      self.encoder = Encoder(cd, c.num_layers, token, c.positional, grid,
                             temporal_grid=grid if c.variant == 'factorised_self_attention'
                             else None,
                             dot_product_grid=grid if c.variant == 'factorised_dot_product'
                             else None, name='encoder')
    # VideoMAE's pooling: mean of the last block's tokens, then this LayerNorm (its eps is
    # torch's nn.LayerNorm default, not the config's).
    self.fc_norm = (layers.LayerNormalization(epsilon=1e-5, name='fc_norm')
                    if c.classifier == 'gap_fc_norm' else None)
    # Logits (and so the loss) in float32 whatever the compute precision.
    self.head = layers.Dense(c.num_outputs, kernel_initializer='zeros', dtype='float32',
                             name='head')
    # conv_head: the CNN's features averaged over the clip give a logit of their own, added to
    # the transformer's (a skip past the transformer, as the 3D CNN baseline's head).
    self.conv_head = (layers.Dense(c.num_outputs, kernel_initializer='zeros', dtype='float32',
                                   name='conv_head') if c.tokenizer == 'conv' and c.conv_head
                      else None)

  def build(self, input_shape):
    c = self.config
    n_t, n_h, n_w = c.token_grid
    self.tokenizer.build(input_shape)
    if c.variant == 'factorised_encoder':
      self.spatial_encoder.build((None, n_h * n_w, c.hidden_size))
      self.temporal_encoder.build((None, n_t, c.hidden_size))
    else:
      self.encoder.build((None, c.num_tokens, c.hidden_size))
    if self.fc_norm:
      self.fc_norm.build((None, c.hidden_size))
    self.head.build((None, c.hidden_size))
    if self.conv_head:
      self.conv_head.build((None, c.conv_widths[-1]))

  def check_input(self, shape) -> None:
    expected = (self.config.num_frames, *self.config.image_size, self.config.channels)
    if len(shape) != 5 or tuple(shape[1:]) != expected:
      raise ValueError(f'ViViT expects clips of shape [B, {", ".join(map(str, expected))}] '
                       f'(T, H, W, C), got {list(shape)}')

  def frame_representations(self, clips, training=None, tokens=None):
    """Model 2's spatial encoder output per time index: [B, T, H, W, C] → [B, n_t, D]
    (`tokens`: the clips' tokens when already computed)."""
    c = self.config
    n_t, n_h, n_w = c.token_grid
    if tokens is None:
      tokens = self.tokenizer(clips, training=training)  # [B, n_t*n_h*n_w, D]
    x = ops.reshape(tokens, (-1, n_h * n_w, c.hidden_size))  # [B*n_t, n_s, D]
    x = self.pool(self.spatial_encoder(x, training=training))  # [B*n_t, D]
    return ops.reshape(x, (-1, n_t, c.hidden_size))

  def call(self, clips, training=None):
    self.check_input(clips.shape)
    c = self.config
    if self.conv_head:  # the CNN's features feed the tokens and, averaged, their own logit
      features = self.tokenizer.features(clips, training=training)  # [B, n_t, n_h, n_w, C]
      skip = self.conv_head(ops.cast(ops.mean(features, axis=(1, 2, 3)), 'float32'))
      tokens = self.tokenizer.tokens(features)
    else:
      skip, tokens = 0.0, None
    if c.variant == 'factorised_encoder':
      x = self.temporal_encoder(self.frame_representations(clips, training, tokens),
                                training=training)
    else:
      if tokens is None:
        tokens = self.tokenizer(clips, training=training)
      x = self.encoder(tokens, training=training)
    return self.head(self.pool(x)) + skip  # [B, n_outputs] logits

  def pool(self, x):  # [B, N(+1), D] → [B, D]
    x = _pool(x, self.config.classifier)
    return self.fc_norm(x) if self.fc_norm else x

  def get_config(self):
    return {'config': self.config.to_dict(), 'name': self.name}

  @classmethod
  def from_config(cls, config):
    return cls(ViViTConfig.from_dict(config['config']), name=config.get('name'))


def build_vivit(config: ViViTConfig, name: str = 'vivit') -> ViViT:
  """Builds the network (weights created, randomly initialised) for clips [B, T, H, W, C].
  Loading the weights a config names is the step after it
  (`models.checkpoints.initialise.initialised_vivit`)."""
  model = ViViT(config, name=name)
  model.build((None, config.num_frames, *config.image_size, config.channels))
  model.init_source = {}  # what was loaded into it (lineage): nothing yet
  return model
