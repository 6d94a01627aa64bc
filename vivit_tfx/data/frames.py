"""The project's one resize-and-crop of video frames, in the graph and on NumPy arrays.

Transform and serving (a checkpoint's processor sizes and crops; `models/checkpoints/
pixel_preprocessing.py`), a webcam's frames in `watch`, the synthetic data's masks. Decoded
video (ingestion, `predict`, `scan`, `watch` on files and streams) is scaled by swscale at its
small size instead (`video_reader`), within a few levels of this resize.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def resized_shape(height: tf.Tensor, width: tf.Tensor, crop_size: Sequence[int],
                  shortest_edge: int = 0, resize_to: Sequence[int] = ()):
  """(new_h, new_w) int32 of the resize before the crop.

  shortest_edge: transformers' rule (short side S, long side int(S * long / short));
  resize_to: exactly (H, W); neither: the smallest aspect-preserving size covering
  `crop_size` (the long side rounded), as ingestion stores frames.
  """
  if resize_to:
    return tf.constant(int(resize_to[0])), tf.constant(int(resize_to[1]))
  h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
  if shortest_edge:
    s = tf.constant(float(shortest_edge), tf.float64)
    long = tf.cast(tf.floor(s * tf.maximum(h, w) / tf.minimum(h, w)), tf.int32)
    short = tf.constant(int(shortest_edge))
    return tf.cond(w <= h, lambda: (long, short), lambda: (short, long))
  out_h, out_w = float(crop_size[0]), float(crop_size[1])
  scale = tf.maximum(out_h / h, out_w / w)
  return (tf.maximum(int(out_h), tf.cast(tf.round(h * scale), tf.int32)),
          tf.maximum(int(out_w), tf.cast(tf.round(w * scale), tf.int32)))


def _levels(resized: tf.Tensor) -> tf.Tensor:
  """A float resize rounded to uint8 levels, as a uint8 image resize is."""
  return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def resize_and_crop(images: tf.Tensor, crop_size: Sequence[int], shortest_edge: int = 0,
                    resize_to: Sequence[int] = ()) -> tf.Tensor:
  """[H, W, C] or [N, H, W, C] uint8/float 0..255 → float32 0..255 [.., *crop_size, C].

  Resize (`resized_shape`) with antialiased bilinear, rounded to uint8 levels as a uint8
  image resize is (transformers' torchvision resize; frames already of the resized size pass
  unchanged), then the centre crop at top/left `(new - crop) // 2`. No crop_size: no crop.
  """
  images = tf.cast(images, tf.float32)
  shape = tf.shape(images)
  height, width = shape[-3], shape[-2]
  if not crop_size and not resize_to:
    raise ValueError('resize_and_crop needs a crop size or an exact resize')
  new_h, new_w = resized_shape(height, width, crop_size or resize_to, shortest_edge, resize_to)
  same = tf.logical_and(tf.equal(new_h, height), tf.equal(new_w, width))
  if not crop_size:
    return tf.cond(same, lambda: images, lambda: _levels(tf.image.resize(
        images, tf.stack([new_h, new_w]), method='bilinear', antialias=True)))
  out_h, out_w = int(crop_size[0]), int(crop_size[1])
  top, left = (new_h - out_h) // 2, (new_w - out_w) // 2

  def resized_crop():  # [.., out_h, out_w, C]
    # tf.image.resize(antialias=True) is ScaleAndTranslate with the triangle kernel: asked for
    # the crop's pixels only (the output shifted by the crop's corner), it computes the same
    # values without the columns and rows the crop drops (720p → 64 × 114 → 64 × 64: about a
    # third less work per frame).
    batch = images if images.shape.rank == 4 else images[tf.newaxis]
    scale = (tf.cast(tf.stack([new_h, new_w]), tf.float32) /
             tf.cast(tf.stack([height, width]), tf.float32))
    out = tf.raw_ops.ScaleAndTranslate(
        images=batch, size=[out_h, out_w], scale=scale,
        translation=-tf.cast(tf.stack([top, left]), tf.float32), kernel_type='triangle',
        antialias=True)
    return _levels(out if images.shape.rank == 4 else out[0])

  cropped = tf.cond(same, lambda: images[..., top:top + out_h, left:left + out_w, :],
                    resized_crop)
  static = images.shape[:-3].as_list() + [out_h, out_w, images.shape[-1]]
  return tf.ensure_shape(cropped, static)


def resize_and_crop_array(frames: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """NumPy uint8 [H, W, C] or [N, H, W, C] → uint8 [.., *size, C]: `resize_and_crop` covering
  `size` (clients that hold decoded frames: `watch`, the synthetic data's actor masks)."""
  return resize_and_crop(tf.constant(frames), tuple(size)).numpy().astype(np.uint8)
