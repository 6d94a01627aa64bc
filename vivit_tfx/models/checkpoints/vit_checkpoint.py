"""Initialises ViViT from an image ViT checkpoint, as the paper (§3.4) and Scenic do.

The checkpoint is a `google-research/vision_transformer` `.npz` (token or gap classifier):
`embedding/{kernel [h, w, C, D], bias}`, `cls` [1, 1, D], `Transformer/posembed_input/
pos_embedding` [1, N(+1), D], `Transformer/encoderblock_{i}/{LayerNorm_0, LayerNorm_2}/
{scale, bias}`, `.../MultiHeadDotProductAttention_1/{query, key, value}/{kernel [D, heads,
head_dim], bias [heads, head_dim]}`, `.../out/{kernel [heads, head_dim, D], bias [D]}`,
`.../MlpBlock_3/Dense_{0,1}/{kernel, bias}`, `Transformer/encoder_norm/{scale, bias}`,
`head/{kernel, bias}`. The model's SelfAttention keeps the same q/k/v/out layouts.

* Tubelet kernel: the 2D kernel inflated over t (`central_frame` or `filter_inflation`).
* Positions: the CLS slot split off, the spatial grid tiled over time (`tile`), bilinearly
  resized when the patch grid differs (`resize`) or both (`resize_tile`); CLS re-attached.
* Model 1 and 4: every encoder layer. Model 2: the spatial encoder; the temporal encoder keeps
  its fresh initialisation (Scenic: an image ViT has no TemporalTransformer). Model 3: spatial
  attention, MLP and norms; temporal attention stays zero-initialised (identity).
* Head: loaded only when its output size equals the model's logits, else new (zeros).

Read through tf.io.gfile (local path, gs://, ram://, ...). Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import io
import re
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

BLOCK = 'Transformer/encoderblock_{}/'
POSEMB = 'Transformer/posembed_input/pos_embedding'


class CheckpointMismatch(ValueError):
  """The checkpoint does not fit the model: names the key and both shapes."""


def read_npz(path: str) -> Dict[str, np.ndarray]:
  """Every array of an .npz read through tf.io.gfile, plus '__sha256__' of the file bytes."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: no such ViT checkpoint (pass a local or remote .npz; '
                            'nothing is downloaded)')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (ValueError, OSError) as e:
    raise CheckpointMismatch(f'{path}: not an .npz checkpoint ({e})') from None
  arrays['__sha256__'] = np.array(hashlib.sha256(data).hexdigest())
  return arrays


def inflate_2d_kernel(kernel_2d: np.ndarray, t: int, method: str) -> np.ndarray:
  """2D patch kernel [h, w, C, D] → 3D tubelet kernel [t, h, w, C, D] (ViViT §3.4).

  'filter_inflation': the 2D kernel replicated over time and divided by t (same response on
  a static clip). 'central_frame': the 2D kernel at frame t // 2, zeros elsewhere.
  """
  if kernel_2d.ndim != 4:
    raise ValueError(f'expected a 2D patch kernel [h, w, C, D], got shape {kernel_2d.shape}')
  if method == 'filter_inflation':
    return np.repeat(kernel_2d[None], t, axis=0) / t
  if method == 'central_frame':
    kernel = np.zeros((t,) + kernel_2d.shape, kernel_2d.dtype)
    kernel[t // 2] = kernel_2d
    return kernel
  raise ValueError(f'unknown kernel init {method!r}')


def resize_grid(grid: np.ndarray, size) -> np.ndarray:
  """Bilinear 2D resize of a positional grid [h, w, D] → [size[0], size[1], D]."""
  if tuple(grid.shape[:2]) == tuple(size):
    return grid
  return tf.image.resize(grid[None].astype(np.float32), size, method='bilinear')[0].numpy()


class Loader:
  """Copies checkpoint arrays into model variables, checking every shape."""

  def __init__(self, arrays: Dict[str, np.ndarray], path: str,
               names: Optional[Dict[str, str]] = None, hints: Optional[Dict[str, str]] = None):
    """names: key → the tensor's name in the file (Hugging Face's), used in errors; hints:
    key → what decides its shape (e.g. config.json's num_frames)."""
    self.arrays, self.path = arrays, path
    self.names, self.hints = names or {}, hints or {}
    self.used, self.assigned = set(), set()  # checkpoint keys read, variable paths written

  def name(self, key: str) -> str:
    """The tensor as the checkpoint file names it."""
    return self.names.get(key, key)

  def hint(self, key: str) -> str:
    return f' ({self.hints[key]})' if key in self.hints else ''

  def get(self, key: str, shape=None) -> np.ndarray:
    self.used.add(key)
    if key not in self.arrays:
      need = f' (the model needs shape {tuple(shape)})' if shape is not None else ''
      raise CheckpointMismatch(f'{self.path}: no key {key!r} in the checkpoint{need}')
    value = self.arrays[key]
    if shape is not None and tuple(value.shape) != tuple(shape):
      raise CheckpointMismatch(f'{self.path}: {self.name(key)} has shape {tuple(value.shape)}, '
                               f'the model needs {tuple(shape)}{self.hint(key)}')
    return value

  def assign(self, variable, key: str) -> None:
    variable.assign(self.get(key, variable.shape).astype(np.float32))
    self.assigned.add(variable.path)

  def dense(self, layer, prefix: str) -> None:
    self.assign(layer.kernel, prefix + 'kernel')
    if layer.bias is not None:  # e.g. VideoMAE's key projection has none
      self.assign(layer.bias, prefix + 'bias')

  def norm(self, layer, prefix: str) -> None:
    self.assign(layer.gamma, prefix + 'scale')
    self.assign(layer.beta, prefix + 'bias')

  def attention(self, mha, prefix: str) -> None:
    for dense, name in ((mha.query, 'query'), (mha.key, 'key'), (mha.value, 'value'),
                        (mha.out, 'out')):
      self.dense(dense, f'{prefix}{name}/')

  def num_blocks(self) -> int:
    found = {int(m.group(1)) for k in self.arrays
             for m in [re.match(r'Transformer/encoderblock_(\d+)/', k)] if m}
    return max(found) + 1 if found else 0


def _positions(loader: Loader, config, table_shape, n_t: int):
  """The checkpoint's table split into (CLS slot [1, D] or None, grid adapted to the model's
  [n_t * n_h * n_w, D], time-major)."""
  _, n_h, n_w = config.token_grid
  restored = loader.get(POSEMB)
  if restored.ndim != 3 or restored.shape[-1] != table_shape[-1]:
    raise CheckpointMismatch(f'{loader.path}: {loader.name(POSEMB)} has shape '
                             f'{restored.shape}, the model needs {tuple(table_shape)}'
                             f'{loader.hint(POSEMB)}')
  n = restored.shape[1]
  side = int(round(np.sqrt(n)))
  if side * side == n:
    cls_slot, grid = None, restored[0]
  else:
    side = int(round(np.sqrt(n - 1)))
    if side * side != n - 1:
      raise CheckpointMismatch(f'{loader.path}: {loader.name(POSEMB)} has shape '
                               f'{restored.shape}: {n} '
                               'positions are neither a square grid nor a grid plus CLS')
    cls_slot, grid = restored[0, :1], restored[0, 1:]
  grid = grid.reshape(side, side, -1)
  method = config.init_positional
  if (side, side) != (n_h, n_w):
    if method == 'tile':
      raise CheckpointMismatch(
          f'{loader.path}: {loader.name(POSEMB)} has shape {restored.shape} ({side}x{side} '
          'patch grid), the '
          f'model needs {tuple(table_shape)} ({n_h}x{n_w} grid); use init_positional='
          "'resize_tile' (or 'resize' for a table without time)")
    grid = resize_grid(grid, (n_h, n_w))
  spatial = grid.reshape(n_h * n_w, -1)
  if n_t > 1 and method == 'resize':
    raise CheckpointMismatch(f"{loader.path}: init_positional='resize' fills a table without "
                             f'time, the model table {tuple(table_shape)} spans {n_t} time '
                             "steps: use 'tile' or 'resize_tile'")
  return cls_slot, np.tile(spatial, (n_t, 1))  # index = i_t * n_s + i_s


def _load_positions(loader: Loader, position, config, n_t: int, token: bool) -> None:
  if position.kind == 'factorised':  # spatial table from the ViT, temporal table unchanged
    _, table = _positions(loader, config, position.spatial.shape, 1)
    position.spatial.assign(table.reshape(position.spatial.shape).astype(np.float32))
    loader.assigned.add(position.spatial.path)
    return
  cls_slot, table = _positions(loader, config, position.table.shape, n_t)
  current = position.table.numpy()
  if token:  # CLS slot re-attached: the checkpoint's, or the model's own (gap checkpoint)
    table = np.concatenate([cls_slot if cls_slot is not None else current[0, :1], table])
  if table.shape != current.shape[1:]:
    raise CheckpointMismatch(f'{loader.path}: {loader.name(POSEMB)} adapted to '
                             f'{(1,) + table.shape}, the model needs {tuple(current.shape)}'
                             f'{loader.hint(POSEMB)}')
  position.table.assign(table[None].astype(np.float32))
  loader.assigned.add(position.table.path)


def _load_encoder(loader: Loader, encoder, config, n_t: int, path_hint: str) -> None:
  """ViT Transformer → one of our Encoders (CLS, positions, blocks, final norm)."""
  depth = loader.num_blocks()
  if depth != len(encoder.blocks):
    raise CheckpointMismatch(
        f'{loader.path}: Transformer/encoderblock_* has {depth} blocks, the model\'s '
        f'{path_hint} needs {len(encoder.blocks)} (num_layers)')
  token = encoder.cls is not None
  if token and 'cls' in loader.arrays:
    loader.assign(encoder.cls.token, 'cls')
  _load_positions(loader, encoder.position, config, n_t, token)
  load_blocks(loader, encoder)


def load_blocks(loader: Loader, encoder) -> None:
  """Every block's norms, (spatial or joint) attention and MLP, then the final norm."""
  for i, block in enumerate(encoder.blocks):
    prefix = BLOCK.format(i)
    loader.norm(block.norm_attention, prefix + 'LayerNorm_0/')
    loader.attention(block.attention, prefix + 'MultiHeadDotProductAttention_1/')
    loader.norm(block.norm_mlp, prefix + 'LayerNorm_2/')
    loader.dense(block.mlp_in, prefix + 'MlpBlock_3/Dense_0/')
    loader.dense(block.mlp_out, prefix + 'MlpBlock_3/Dense_1/')
  if encoder.norm:
    loader.norm(encoder.norm, 'Transformer/encoder_norm/')


def initialise(model, path: Optional[str] = None) -> Dict[str, str]:
  """Loads the ViT checkpoint at `path` (default: `model.config.init_checkpoint`) into a built
  ViViT. Returns {'init_checkpoint': path, 'init_checkpoint_sha256': digest} for lineage."""
  path = path or model.config.init_checkpoint
  arrays = read_npz(path)
  loader = Loader(arrays, path)
  load_image_vit(model, loader)
  head = model.head
  if 'head/kernel' in arrays and tuple(arrays['head/kernel'].shape) == tuple(head.kernel.shape):
    loader.dense(head, 'head/')
  return {'init_checkpoint': path, 'init_checkpoint_sha256': str(arrays['__sha256__'])}


def load_image_vit(model, loader: Loader) -> None:
  """An image ViT's arrays (this module's key names) into a built ViViT, head excepted:
  inflated tubelet kernel, adapted positions, encoder blocks (see the module docstring)."""
  config = model.config
  n_t = config.token_grid[0]
  hidden = config.hidden_size
  conv = model.tokenizer.projection
  kernel_2d = loader.get('embedding/kernel', tuple(conv.kernel.shape[1:]))
  if tuple(kernel_2d.shape[-1:]) != (hidden,):
    raise CheckpointMismatch(f'{loader.path}: embedding/kernel has shape {kernel_2d.shape}, '
                             f'the model needs {tuple(conv.kernel.shape[1:])}')
  conv.kernel.assign(inflate_2d_kernel(kernel_2d, conv.kernel.shape[0],
                                       config.kernel_init).astype(np.float32))
  loader.assigned.add(conv.kernel.path)
  loader.assign(conv.bias, 'embedding/bias')
  if config.variant == 'factorised_encoder':
    _load_encoder(loader, model.spatial_encoder, config, 1, 'spatial encoder')
  else:
    _load_encoder(loader, model.encoder, config, n_t, 'encoder')
