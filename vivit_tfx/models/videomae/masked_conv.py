"""Masked convolutions for masked-autoencoder pre-training through a convolutional tokenizer
(SparK, Tian et al. ICLR 2023; ConvMAE, Gao et al. NeurIPS 2022), in dense form.

A convolution slides across the tubelets VideoMAE hides, so dropping hidden tokens after the
stem leaks them. Here the hidden cells are empty at every layer instead: the input's hidden
tubelets are zeroed, every convolution's output is zeroed on the hidden cells again (the dense
equivalent of a sparse convolution: a visible cell sees its hidden neighbours as empty), group
norm's statistics are taken over the visible cells only (SparK's sparse norm), and each
max-pool window lies within one token's cell, so it never mixes hidden and visible. Every token
then depends on the visible pixels alone.

Shapes: clips [B, T, H, W, C]; visible [B, n_t, n_h, n_w] float (1 = visible); features
[B, t, h, w, C] at any of the stem's resolutions, each a multiple of the token grid.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def cells_at(visible, shape) -> tf.Tensor:
  """The token grid's visibility [B, n_t, n_h, n_w] at a feature map's resolution
  (`shape` [B, t, h, w, C], each a multiple of the grid) → [B, t, h, w, 1]."""
  x = visible[..., None]
  for axis in (1, 2, 3):
    factor = shape[axis] // x.shape[axis]
    if factor * x.shape[axis] != shape[axis]:
      raise ValueError(f'feature map {list(shape)} is not a multiple of the token grid '
                       f'{list(visible.shape[1:])} on axis {axis}')
    x = ops.repeat(x, factor, axis=axis)
  return x


def masked_group_norm(norm: keras.layers.GroupNormalization, x, cells) -> tf.Tensor:
  """`norm` (a built GroupNormalization: groups, gamma, beta, epsilon) with each clip's group
  statistics over the visible cells only; [B, t, h, w, C], cells [B, t, h, w, 1] → same."""
  dtype = x.dtype
  x, cells = ops.cast(x, 'float32'), ops.cast(cells, 'float32')
  b, t, h, w, c = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]
  g = norm.groups
  grouped = ops.reshape(x, (b, t, h, w, g, c // g))
  weight = cells[..., None]  # [B, t, h, w, 1, 1]
  count = ops.maximum(ops.sum(weight, axis=(1, 2, 3, 5), keepdims=True) * (c // g), 1.0)
  mean = ops.sum(grouped * weight, axis=(1, 2, 3, 5), keepdims=True) / count
  var = ops.sum(ops.square(grouped - mean) * weight, axis=(1, 2, 3, 5), keepdims=True) / count
  y = ops.reshape((grouped - mean) * ops.rsqrt(var + norm.epsilon), (b, t, h, w, c))
  if norm.scale:
    y = y * ops.cast(norm.gamma, 'float32')
  if norm.center:
    y = y + ops.cast(norm.beta, 'float32')
  return ops.cast(y * cells, dtype)


def masked_features(tokenizer, clips, visible) -> tf.Tensor:
  """A ConvTokenizer's features (`ConvTokenizer.features`) with the hidden tubelets empty at
  every layer: [B, T, H, W, C], visible [B, n_t, n_h, n_w] → [B, n_t, n_h, n_w, C_last], zero
  on the hidden cells. A group-norm stem (`VideoMAEPretrainer` refuses the others)."""
  if tokenizer.inputs == 'rgb+diff':
    clips = tokenizer.with_differences(clips)  # before masking: a frame's own difference
  x = clips * ops.cast(cells_at(visible, clips.shape), clips.dtype)
  x = tokenizer.stem(x)
  x = x * ops.cast(cells_at(visible, x.shape), x.dtype)
  for conv, norm, pool in zip(tokenizer.convs, tokenizer.norms, tokenizer.pools):
    y = conv(x)
    cells = cells_at(visible, y.shape)
    y = ops.relu(masked_group_norm(norm, y, cells))  # ReLU keeps the hidden cells at 0
    x = pool(y)  # a window within one token's cell: all hidden or all visible
  return x
