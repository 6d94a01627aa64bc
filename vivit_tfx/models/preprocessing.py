"""Transform's `preprocessing_fn`: JPEG frames → normalised float clips (Beam analyzers).

Runs with `materialize=False`: nothing float is written; the same graph is applied in the
Trainer's input pipeline and inside the serving signature. Records may hold more frames than a
clip (the sampling rule of `clip_views`): the graph decodes the central clip of T frames;
callers choose another clip by handing a record that holds only that clip.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.models import clip_views, features

DEFAULT_IMAGE_SIZE = (64, 64)


def _decode_frame(jpeg: tf.Tensor, size) -> tf.Tensor:
  """JPEG bytes → [H, W, 3] float32 in [0, 1], resized to `size`."""
  image = tf.io.decode_jpeg(jpeg, channels=3)
  image = tf.image.convert_image_dtype(image, tf.float32)
  return tf.image.resize(image, size, antialias=True)


def decode_clips(frames: tf.Tensor, size) -> tf.Tensor:
  """[B, T] JPEG bytes → [B, T, H, W, 3] float32 in [0, 1]."""
  num_frames = frames.shape[1]
  flat = tf.reshape(frames, [-1])  # [B*T]
  images = tf.map_fn(lambda b: _decode_frame(b, size), flat,
                     fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))
  return tf.reshape(images, [-1, num_frames, *size, 3])


def preprocessing_fn(inputs: Dict[str, tf.Tensor],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
  """Decodes clips and standardises each channel with mean/std over the whole train split."""
  custom_config = custom_config or {}
  size = tuple(custom_config.get('image_size', DEFAULT_IMAGE_SIZE))
  frames = inputs[features.FRAMES]  # [B, N]
  frames = clip_views.central_clip(frames, int(custom_config.get('num_frames',
                                                                  frames.shape[1])))  # [B, T]
  clips = decode_clips(frames, size)  # [B, T, H, W, 3]
  pixels = tf.reshape(clips, [-1, 3])  # every pixel of the batch is one row: [B*T*H*W, 3]
  mean = tft.mean(pixels, reduce_instance_dims=False)  # [3]
  var = tft.var(pixels, reduce_instance_dims=False)  # [3]
  return {
      features.CLIP_XF: (clips - mean) / tf.sqrt(var + 1e-6),
      features.LABEL: inputs[features.LABEL],  # passed through untransformed
  }
