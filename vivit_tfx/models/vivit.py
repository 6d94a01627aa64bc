"""ViViT (Arnab et al., ICCV 2021) in Keras 3: tokenizers, encoder blocks and the four variants.

Shapes: clips [B, T, H, W, C]; tokens [B, N, D] with N = n_t * n_h * n_w ordered time-major
(token index = i_t * n_h * n_w + i_h * n_w + i_w).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import keras
import numpy as np
from keras import layers, ops

from vivit_tfx.models.vit_checkpoint import inflate_2d_kernel  # pylint: disable=unused-import
from vivit_tfx.models.vivit_config import ViViTConfig

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
    return ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_size))  # [B, N, D]

  def get_config(self):
    return {**super().get_config(), 'hidden_size': self.hidden_size,
            'tubelet_size': self.tubelet_size}


@keras.saving.register_keras_serializable(_PACKAGE)
class PositionalEmbedding(layers.Layer):
  """Learned positional embedding whose table is sized in build() from the real token count.

  'learned': one [1, N, D] table. 'factorised': a spatial [n_s, D] plus a temporal [n_t, D]
  table, summed (needs `grid=(n_t, n_s)`).
  """

  def __init__(self, kind: str = 'learned', grid=None, **kwargs):
    super().__init__(**kwargs)
    self.kind = kind
    self.grid = tuple(grid) if grid else None

  def build(self, input_shape):
    _, n, d = input_shape
    init = keras.initializers.RandomNormal(stddev=0.02)
    if self.kind == 'factorised':
      n_t, n_s = self.grid
      if n_t * n_s != n:
        raise ValueError(f'factorised positional grid {self.grid} gives {n_t * n_s} tokens, '
                         f'input has {n}')
      self.spatial = self.add_weight(name='pos_embedding_spatial', shape=(1, 1, n_s, d),
                                     initializer=init)
      self.temporal = self.add_weight(name='pos_embedding_temporal', shape=(1, n_t, 1, d),
                                      initializer=init)
    else:
      self.table = self.add_weight(name='pos_embedding', shape=(1, n, d), initializer=init)
    self.num_tokens = n

  def call(self, tokens):  # [B, N, D] → [B, N, D]
    if tokens.shape[1] is not None and tokens.shape[1] != self.num_tokens:
      raise ValueError(f'positional embedding has {self.num_tokens} positions, the input has '
                       f'{tokens.shape[1]} tokens')
    if self.kind == 'factorised':
      table = ops.reshape(self.spatial + self.temporal, (1, self.num_tokens, -1))
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
    mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed, dtype=x.dtype))
    return x / keep * mask

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed_value}


@keras.saving.register_keras_serializable(_PACKAGE)
class EncoderBlock(layers.Layer):
  """Pre-LN transformer block: x + MHA(LN(x)); x + MLP(LN(x)) (GELU MLP, dropout, drop-path).

  With `temporal_grid=(n_t, n_s)` it is Model 3's factorised self-attention block: spatial MHA
  within each frame, then temporal MHA across frames at each position (its output projection
  zero-initialised, so it starts as identity), then the MLP. With `dot_product_grid=(n_t, n_s)`
  it is Model 4's factorised dot-product attention: one MHA whose first half of the heads
  attends over space (within a frame), the second half over time (at a position).
  """

  def __init__(self, hidden_size, num_heads, mlp_dim, dropout=0.0, attention_dropout=0.0,
               drop_path=0.0, temporal_grid=None, dot_product_grid=None, seed=1337, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size, self.num_heads, self.mlp_dim = hidden_size, num_heads, mlp_dim
    self.dropout, self.attention_dropout, self.drop_path = dropout, attention_dropout, drop_path
    self.temporal_grid = tuple(temporal_grid) if temporal_grid else None
    self.dot_product_grid = tuple(dot_product_grid) if dot_product_grid else None
    self.seed = seed
    mha = lambda name, **kw: layers.MultiHeadAttention(
        num_heads, key_dim=hidden_size // num_heads, dropout=attention_dropout,
        kernel_initializer='glorot_uniform', name=name, **kw)
    self.norm_attention = layers.LayerNormalization(epsilon=1e-6, name='norm_attention')
    self.attention = mha('attention')
    if self.temporal_grid:
      self.norm_temporal = layers.LayerNormalization(epsilon=1e-6, name='norm_temporal')
      self.temporal_attention = mha('temporal_attention')
    self.norm_mlp = layers.LayerNormalization(epsilon=1e-6, name='norm_mlp')
    self.mlp_in = layers.Dense(mlp_dim, activation='gelu', name='mlp_in')
    self.mlp_out = layers.Dense(hidden_size, name='mlp_out')
    self.drop = layers.Dropout(dropout)
    self.drop_branch = StochasticDepth(drop_path, seed=seed)

  def build(self, input_shape):
    _, n, d = input_shape
    if self.temporal_grid:
      n_t, n_s = self.temporal_grid
      self.attention.build((None, n_s, d), (None, n_s, d))
      self.temporal_attention.build((None, n_t, d), (None, n_t, d))
      out = self.temporal_attention._output_dense  # pylint: disable=protected-access
      out.kernel.assign(np.zeros(out.kernel.shape, 'float32'))
      self.norm_temporal.build(input_shape)
    else:
      self.attention.build((None, n, d), (None, n, d))
    self.norm_attention.build(input_shape)
    self.norm_mlp.build(input_shape)
    self.mlp_in.build(input_shape)
    self.mlp_out.build((None, n, self.mlp_dim))

  def _self_attention(self, mha, x, training):
    return self.drop_branch(self.drop(mha(x, x, training=training), training=training),
                            training=training)

  def _dot_product_attention(self, x, training):
    """Model 4: [B, N, D] → [B, N, D]; heads [0, H/2) over space, [H/2, H) over time."""
    # pylint: disable=protected-access
    mha, (n_t, n_s) = self.attention, self.dot_product_grid
    heads, head_dim = self.num_heads, self.hidden_size // self.num_heads
    half = heads // 2
    split = lambda t: ops.reshape(t, (-1, n_t, n_s, heads, head_dim))  # [B, n_t, n_s, H, hd]
    q = split(mha._query_dense(x)) * ops.cast(1.0 / np.sqrt(head_dim), x.dtype)
    k, v = split(mha._key_dense(x)), split(mha._value_dense(x))
    softmax = lambda a: mha._dropout_layer(
        ops.cast(ops.softmax(ops.cast(a, 'float32'), axis=-1), v.dtype), training=training)
    spatial = softmax(ops.einsum('btshd,btzhd->bthsz', q[..., :half, :], k[..., :half, :]))
    spatial = ops.einsum('bthsz,btzhd->btshd', spatial, v[..., :half, :])
    temporal = softmax(ops.einsum('btshd,bushd->bshtu', q[..., half:, :], k[..., half:, :]))
    temporal = ops.einsum('bshtu,bushd->btshd', temporal, v[..., half:, :])
    heads_out = ops.concatenate([spatial, temporal], axis=3)  # [B, n_t, n_s, H, hd]
    return mha._output_dense(ops.reshape(heads_out, (-1, n_t * n_s, heads, head_dim)))

  def call(self, x, training=None):  # [B, N, D] → [B, N, D]
    if self.dot_product_grid:
      y = self._dot_product_attention(self.norm_attention(x), training)
      x = x + self.drop_branch(self.drop(y, training=training), training=training)
    elif self.temporal_grid:
      n_t, n_s = self.temporal_grid
      d = self.hidden_size
      y = ops.reshape(self.norm_attention(x), (-1, n_s, d))  # [B*n_t, n_s, D]
      x = x + ops.reshape(self._self_attention(self.attention, y, training), (-1, n_t * n_s, d))
      y = ops.reshape(self.norm_temporal(x), (-1, n_t, n_s, d))
      y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, n_t, d))  # [B*n_s, n_t, D]
      y = self._self_attention(self.temporal_attention, y, training)
      y = ops.transpose(ops.reshape(y, (-1, n_s, n_t, d)), (0, 2, 1, 3))
      x = x + ops.reshape(y, (-1, n_t * n_s, d))
    else:
      x = x + self._self_attention(self.attention, self.norm_attention(x), training)
    y = self.mlp_out(self.drop(self.mlp_in(self.norm_mlp(x)), training=training))
    return x + self.drop_branch(self.drop(y, training=training), training=training)

  def get_config(self):
    return {**super().get_config(), 'hidden_size': self.hidden_size,
            'num_heads': self.num_heads, 'mlp_dim': self.mlp_dim, 'dropout': self.dropout,
            'attention_dropout': self.attention_dropout, 'drop_path': self.drop_path,
            'temporal_grid': self.temporal_grid, 'dot_product_grid': self.dot_product_grid,
            'seed': self.seed}


@keras.saving.register_keras_serializable(_PACKAGE)
class Encoder(layers.Layer):
  """[optional CLS] + positional embedding + dropout + L blocks + final LayerNorm."""

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
    # With a CLS token the table also covers it, so it cannot be factorised.
    self.position = PositionalEmbedding('learned' if class_token else positional, grid,
                                        name='position')
    self.drop = layers.Dropout(c.dropout)
    self.blocks = [
        EncoderBlock(c.hidden_size, c.num_heads, c.mlp_dim, c.dropout, c.attention_dropout,
                     drop_path=c.stochastic_depth * (drop_path_offset + i + 1) / total,
                     temporal_grid=temporal_grid, dot_product_grid=dot_product_grid,
                     seed=1337 + drop_path_offset + i, name=f'block_{i}')
        for i in range(num_layers)
    ]
    self.norm = layers.LayerNormalization(epsilon=1e-6, name='norm')

  def build(self, input_shape):
    b, n, d = input_shape
    if self.cls:
      self.cls.build(input_shape)
      n += 1
    self.position.build((b, n, d))
    for block in self.blocks:
      block.build((b, n, d))
    self.norm.build((b, n, d))

  def call(self, tokens, training=None):  # [B, N, D] → [B, N(+1), D]
    x = self.cls(tokens) if self.cls else tokens
    x = self.drop(self.position(x), training=training)
    for block in self.blocks:
      x = block(x, training=training)
    return self.norm(x)

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
    self.tokenizer = TubeletEmbedding(c.hidden_size, c.tubelet_size, name='tubelet_embedding')
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
    # Logits (and so the loss) in float32 whatever the compute precision.
    self.head = layers.Dense(c.num_outputs, kernel_initializer='zeros', dtype='float32',
                             name='head')

  def build(self, input_shape):
    c = self.config
    n_t, n_h, n_w = c.token_grid
    self.tokenizer.build(input_shape)
    if c.variant == 'factorised_encoder':
      self.spatial_encoder.build((None, n_h * n_w, c.hidden_size))
      self.temporal_encoder.build((None, n_t, c.hidden_size))
    else:
      self.encoder.build((None, c.num_tokens, c.hidden_size))
    self.head.build((None, c.hidden_size))

  def check_input(self, shape) -> None:
    expected = (self.config.num_frames, *self.config.image_size, self.config.channels)
    if len(shape) != 5 or tuple(shape[1:]) != expected:
      raise ValueError(f'ViViT expects clips of shape [B, {", ".join(map(str, expected))}] '
                       f'(T, H, W, C), got {list(shape)}')

  def frame_representations(self, clips, training=None):
    """Model 2's spatial encoder output per time index: [B, T, H, W, C] → [B, n_t, D]."""
    c = self.config
    n_t, n_h, n_w = c.token_grid
    tokens = self.tokenizer(clips)  # [B, n_t*n_h*n_w, D]
    x = ops.reshape(tokens, (-1, n_h * n_w, c.hidden_size))  # [B*n_t, n_s, D]
    x = _pool(self.spatial_encoder(x, training=training), c.classifier)  # [B*n_t, D]
    return ops.reshape(x, (-1, n_t, c.hidden_size))

  def call(self, clips, training=None):
    self.check_input(clips.shape)
    c = self.config
    if c.variant == 'factorised_encoder':
      x = self.temporal_encoder(self.frame_representations(clips, training), training=training)
    else:
      x = self.encoder(self.tokenizer(clips), training=training)
    return self.head(_pool(x, c.classifier))  # [B, n_outputs] logits

  def get_config(self):
    return {'config': self.config.to_dict(), 'name': self.name}

  @classmethod
  def from_config(cls, config):
    return cls(ViViTConfig.from_dict(config['config']), name=config.get('name'))


def build_vivit(config: ViViTConfig, name: str = 'vivit', initialise: bool = True) -> ViViT:
  """Builds the model (weights created) for clips [B, T, H, W, C]; with `initialise`, loads
  `config.init_checkpoint` (an image ViT, models/vit_checkpoint.py) or the tubelet kernel of
  `kernel_init_checkpoint`. `model.init_source` records what was loaded (lineage)."""
  model = ViViT(config, name=name)
  model.build((None, config.num_frames, *config.image_size, config.channels))
  model.init_source = {}
  if initialise and config.init_checkpoint:
    from vivit_tfx.models import vit_checkpoint  # pylint: disable=g-import-not-at-top
    model.init_source = vit_checkpoint.initialise(model)
  elif initialise and config.kernel_init != 'random':
    load_tubelet_kernel(model, config.kernel_init_checkpoint, config.kernel_init)
  return model


def load_tubelet_kernel(model: ViViT, checkpoint: str, method: str) -> None:
  """Initialises the tubelet kernel from an .npz ('kernel' [h, w, C, D], opt. 'bias') read
  through tf.io.gfile."""
  from vivit_tfx.models import vit_checkpoint  # pylint: disable=g-import-not-at-top
  if not checkpoint:
    raise ValueError(f"kernel_init={method!r} needs kernel_init_checkpoint (an .npz with "
                     "'kernel' [h, w, C, D]) or init_checkpoint (a ViT .npz); nothing is "
                     'downloaded')
  data = vit_checkpoint.read_npz(checkpoint)
  kernel = inflate_2d_kernel(data['kernel'], model.config.tubelet_size[0], method)
  bias: Optional[np.ndarray] = data.get('bias')
  conv = model.tokenizer.projection
  if tuple(conv.kernel.shape) != kernel.shape:
    raise ValueError(f'{checkpoint}: inflated kernel {kernel.shape} does not match the '
                     f'tubelet kernel {tuple(conv.kernel.shape)}')
  conv.kernel.assign(kernel)
  if bias is not None:
    conv.bias.assign(bias)
