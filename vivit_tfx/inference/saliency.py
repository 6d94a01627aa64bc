"""Where does ViViT look? Token maps over the tubelet grid [n_t, n_h, n_w] for one clip.

* `attention_rollout` (Abnar & Zuidema 2020) for Model 1: per layer, head-averaged attention
  plus the residual (0.5·A + 0.5·I, rows renormalised), multiplied through the layers; read at
  the CLS row, or averaged over all query tokens for GAP.
* `gradient_map` for every variant: |∂ violence logit / ∂ input · input| summed per tubelet.
Both return a map that sums to 1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from vivit_tfx.models.network.vivit import ViViT


def _normalise(values: np.ndarray, grid) -> np.ndarray:
  values = np.maximum(np.asarray(values, np.float64), 0)
  return (values / max(values.sum(), 1e-12)).reshape(grid)


def attention_rollout(model: ViViT, clip: tf.Tensor) -> np.ndarray:
  """clip [1, T, H, W, C] (normalised) → [n_t, n_h, n_w]; Model 1 (spatiotemporal) only."""
  if model.config.variant != 'spatiotemporal':
    raise ValueError('attention rollout needs one joint encoder (Model 1); use gradient_map '
                     f'for {model.config.variant}')
  encoder = model.encoder
  x = model.tokenizer(clip)  # [1, N, D]
  if encoder.cls:
    x = encoder.cls(x)
  x = encoder.position(x)
  n = x.shape[1]
  rollout = np.eye(n)
  for block in encoder.blocks:
    y = block.norm_attention(x)
    _, scores = block.attention(y, return_attention_scores=True)  # [1, heads, N, N]
    a = 0.5 * np.asarray(scores)[0].mean(0) + 0.5 * np.eye(n)
    rollout = (a / a.sum(-1, keepdims=True)) @ rollout
    x = block(x)
  weights = rollout[0, 1:] if encoder.cls else rollout.mean(0)
  return _normalise(weights, model.config.token_grid)


def gradient_map(model: ViViT, clip: tf.Tensor, target: Optional[int] = None) -> np.ndarray:
  """clip [1, T, H, W, C] → [n_t, n_h, n_w]: gradient × input of the logit of class `target`
  (the positive class; binary models have one logit, None on a multi-class one: the top
  class)."""
  clip = tf.convert_to_tensor(clip)
  with tf.GradientTape() as tape:
    tape.watch(clip)
    logits = model(clip, training=False)
    if logits.shape[-1] == 1:
      chosen = logits[:, 0]
    else:
      index = int(tf.argmax(logits[0])) if target is None else target
      chosen = logits[:, index]
  saliency = tf.reduce_sum(tf.abs(tape.gradient(chosen, clip) * clip), axis=-1)[0]  # [T, H, W]
  t, h, w = model.config.tubelet_size
  n_t, n_h, n_w = model.config.token_grid
  per_tubelet = tf.reshape(saliency, (n_t, t, n_h, h, n_w, w))
  return _normalise(tf.reduce_sum(per_tubelet, axis=(1, 3, 5)).numpy(), (n_t, n_h, n_w))


def token_map(model: ViViT, clip: tf.Tensor, method: str = 'auto',
              target: Optional[int] = None) -> np.ndarray:
  """'auto': rollout for Model 1, gradient (of class `target`'s logit) for the factorised
  variants and for a hybrid whose CNN has its own logit (`conv_head`: rollout follows the
  transformer's attention only, not the part of the decision that skips it)."""
  if method == 'auto':
    rollout_sees_all = (model.config.variant == 'spatiotemporal' and
                        getattr(model, 'conv_head', None) is None)
    method = 'rollout' if rollout_sees_all else 'gradient'
  if method == 'rollout':
    return attention_rollout(model, clip)
  if method == 'gradient':
    return gradient_map(model, clip, target)
  raise ValueError(f"method {method!r} is not one of 'auto', 'rollout', 'gradient'")
