"""Transform's `preprocessing_fn`: JPEG frames → the model's float clips.

The pixels are the pipeline's `PixelPreprocessing` (`custom_config['pixels']`,
models/checkpoints/pixel_preprocessing.py): a checkpoint's own processor (resize, crop, rescale,
mean/std as transformers applies them), [-1, 1], or, with no checkpoint, the train split's
per-channel mean/std (Beam analyzers).

Runs with `materialize=False`: nothing float is written; the same graph is applied in the
Trainer's input pipeline and inside the serving signature. Records may hold more frames than a
clip (the sampling rule of `clip_views`): the graph decodes the central clip of T frames;
callers choose another clip by handing a record that holds only that clip.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.models.trainer import clip_views

from vivit_tfx.data import features
from vivit_tfx.models.checkpoints.pixel_preprocessing import PixelPreprocessing

DEFAULT_IMAGE_SIZE = (64, 64)


def decode_pixels(frames: tf.Tensor, pixels: PixelPreprocessing) -> tf.Tensor:
  """[B, T] JPEG bytes → [B, T, h, w, 3] float32 0..255, resized and cropped by `pixels`."""
  num_frames = frames.shape[1]
  size = tuple(pixels.crop_size)
  flat = tf.reshape(frames, [-1])  # [B*T]
  images = tf.map_fn(
      lambda jpeg: pixels.resize_and_crop(tf.io.decode_jpeg(jpeg, channels=3)), flat,
      fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))
  return tf.reshape(images, [-1, num_frames, *size, 3])


def decode_clips(frames: tf.Tensor, size) -> tf.Tensor:
  """[B, T] JPEG bytes → [B, T, H, W, 3] float32 in [0, 1], covering `size` (H, W)."""
  return decode_pixels(frames, PixelPreprocessing.dataset().for_image_size(size)) / 255.0


def preprocessing_fn(inputs: Dict[str, tf.Tensor],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
  """Decodes the central clip of each record and normalises it as `custom_config['pixels']`
  says; with the dataset's statistics, each channel is standardised with the mean/std over
  the whole train split."""
  custom_config = custom_config or {}
  size = tuple(custom_config.get('image_size', DEFAULT_IMAGE_SIZE))
  pixels = PixelPreprocessing.from_dict(custom_config.get('pixels')).for_image_size(size)
  frames = inputs[features.FRAMES]  # [B, N]
  frames = clip_views.central_clip(frames, int(custom_config.get('num_frames',
                                                                  frames.shape[1])))  # [B, T]
  clips = decode_pixels(frames, pixels)  # [B, T, H, W, 3] 0..255
  if pixels.source == 'dataset':
    rows = tf.reshape(pixels.rescale(clips), [-1, 3])  # every pixel is one row: [B*T*H*W, 3]
    mean = tft.mean(rows, reduce_instance_dims=False)  # [3]
    std = tf.sqrt(tft.var(rows, reduce_instance_dims=False) + 1e-6)  # [3]
    clips = pixels.normalise(clips, mean, std)
  else:
    clips = pixels.normalise(clips)
  return {
      features.CLIP_XF: clips,
      features.LABEL: inputs[features.LABEL],  # passed through untransformed
  }
