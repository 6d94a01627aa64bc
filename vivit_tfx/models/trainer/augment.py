"""Training-only spatial clip augmentation, applied in the Trainer's input pipeline (never
exported). The temporal one (a random speed) is part of choosing the clip: `clip_views`."""
from __future__ import annotations

import tensorflow as tf


def random_flip(clips: tf.Tensor) -> tf.Tensor:
  """Mirrors each clip left-right with probability 1/2. [B, T, H, W, C] → same."""
  flip = tf.random.uniform([tf.shape(clips)[0], 1, 1, 1, 1]) < 0.5
  return tf.where(flip, tf.reverse(clips, axis=[3]), clips)


def random_resized_crop(clips: tf.Tensor, min_scale: float = 0.75) -> tf.Tensor:
  """One random crop box per clip (same for all its frames), resized back. [B, T, H, W, C]."""
  b, t = tf.shape(clips)[0], tf.shape(clips)[1]
  h, w, c = clips.shape[2], clips.shape[3], clips.shape[4]
  scale = tf.random.uniform([b], min_scale, 1.0)
  y0 = tf.random.uniform([b]) * (1.0 - scale)
  x0 = tf.random.uniform([b]) * (1.0 - scale)
  boxes = tf.stack([y0, x0, y0 + scale, x0 + scale], axis=1)  # [B, 4] normalised
  boxes = tf.repeat(boxes, t, axis=0)  # [B*T, 4]
  frames = tf.reshape(clips, [-1, h, w, c])
  out = tf.image.crop_and_resize(frames, boxes, tf.range(b * t), [h, w])
  return tf.reshape(out, [b, t, h, w, c])


def augment(clips: tf.Tensor) -> tf.Tensor:
  return random_flip(random_resized_crop(clips))


def photometric_noise(clips: tf.Tensor, strength: float) -> tf.Tensor:
  """Noisy Student's input noise for normalised clips [B, T, H, W, C] → same: per clip a
  brightness shift (±strength) and a contrast scale (1 ± strength, about the clip's mean),
  then independent Gaussian pixel noise (σ = strength / 2). Geometry and timing are kept:
  the motion the label depends on stays where it was."""
  if strength <= 0:
    return clips
  b = tf.shape(clips)[0]
  shift = tf.random.uniform([b, 1, 1, 1, 1], -strength, strength)
  scale = tf.random.uniform([b, 1, 1, 1, 1], 1 - strength, 1 + strength)
  mean = tf.reduce_mean(clips, axis=[1, 2, 3, 4], keepdims=True)
  noisy = (clips - mean) * scale + mean + shift
  return noisy + tf.random.normal(tf.shape(clips), stddev=strength / 2, dtype=clips.dtype)


def strong(clips: tf.Tensor, min_scale: float = 0.5, noise: float = 0.5) -> tf.Tensor:
  """FixMatch's strong view of normalised clips [B, T, H, W, C] → same: a crop down to
  `min_scale` of the side, a flip, then `photometric_noise(noise)`; timing is kept."""
  return photometric_noise(random_flip(random_resized_crop(clips, min_scale)), noise)
