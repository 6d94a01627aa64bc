"""`vivit-tfx attention`: the pushed model's token map over a clip, drawn on its frames
(an image strip and an animated GIF)."""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np
from PIL import Image

from vivit_tfx import extras, outputs
from vivit_tfx.data import clip_example, features, video_reader  # pylint: disable=unused-import
from vivit_tfx.inference import predict

import cv2  # pylint: disable=g-bad-import-order  # after video_reader sets OpenCV's log level


def clip_map(video: str, model_dir: str, method: str = 'auto') -> Tuple[np.ndarray, np.ndarray]:
  """(frames [T, H, W, 3] uint8 of the central clip as ingested, the model's token map over
  that clip [n_t, n_h, n_w] summing to 1). The central clip is evaluation's view for K = 1
  (`predict.view_indices(..., num_views=1)` gives its source frames)."""
  # local: TensorFlow and the modules that import it (see `predict.predict`).
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import saliency  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import clip_views  # pylint: disable=g-import-not-at-top
  config = predict.clip_config_of(model_dir)
  record = predict.serialized_clip(video, config)
  slots = tf.train.Example.FromString(record).features.feature[features.FRAMES].bytes_list
  central = clip_views.central_clip(tf.constant([list(slots.value)]), config.num_frames)  # [1, T]
  frames = clip_example.decode_jpegs(central[0].numpy())  # [T, H, W, 3]
  transform = predict.saved_model(model_dir).signatures['transform_features']
  clip = transform(examples=tf.constant([record]))[features.CLIP_XF]  # [1, T, H, W, 3]
  return frames, saliency.token_map(predict.keras_model(model_dir), clip, method,
                                    config.positive_index)


def upsample(token_map: np.ndarray, frames_shape) -> np.ndarray:
  """[n_t, n_h, n_w] → [T, H, W] (nearest over tubelets), scaled to [0, 1]."""
  t_total, h, w = frames_shape[:3]
  per_frame = np.repeat(token_map, t_total // token_map.shape[0], axis=0)
  maps = np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
                   for m in per_frame])
  return maps / max(maps.max(), 1e-12)


def render(video: str, model_dir: str, out_dir: str, method: str = 'auto',
           overwrite: bool = False, stem: str = '') -> Dict[str, str]:
  """Writes <stem>.attention.png (strip), .gif (animation) and .npy (the token map), never
  over a file of the user's (`outputs.OutputFolder`) unless `overwrite`; stem: the video's
  unless given (`timeline.output_stems` for several videos)."""
  cm = extras.pyplot().cm  # before the model is loaded: the [report] extra draws
  stem = stem or os.path.splitext(os.path.basename(video))[0]
  folder = outputs.OutputFolder(out_dir, overwrite)
  png, gif, npy = folder.claim(
      *(f'{stem}.attention.{ext}' for ext in ('png', 'gif', 'npy')))
  frames, token_map = clip_map(video, model_dir, method)
  heat = upsample(token_map, frames.shape)
  overlay = (0.55 * frames + 0.45 * 255 * cm.jet(heat)[..., :3]).astype(np.uint8)
  scale = max(1, 128 // frames.shape[1])
  big = [np.kron(np.concatenate([f, o], axis=0), np.ones((scale, scale, 1), np.uint8))
         for f, o in zip(frames, overlay)]
  Image.fromarray(np.concatenate(big, axis=1)).save(png)
  Image.fromarray(big[0]).save(gif, save_all=True,
                               append_images=[Image.fromarray(b) for b in big[1:]],
                               duration=250, loop=0)
  with open(npy, 'wb') as f:
    np.save(f, token_map)
  folder.done()
  return {'png': png, 'gif': gif, 'npy': npy, 'grid': 'x'.join(map(str, token_map.shape))}
