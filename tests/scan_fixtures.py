"""A pushed model in seconds, for the scan's tests: serving_default scores a clip record by the
motion between its frames (the synthetic violent scenes move fast), no training needed."""
import json
import os

import numpy as np
import tensorflow as tf

from vivit_tfx.data import features, synthetic
from vivit_tfx.data.clip_config import CLIP_CONFIG_FILE


class MotionModel(tf.Module):
  """P(Violence) = sigmoid((mean |frame_t+1 - frame_t| - 8) / 3) of a record's frames."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def serve(self, examples):
    parsed = tf.io.parse_example(examples, {features.FRAMES: tf.io.VarLenFeature(tf.string)})
    jpegs = tf.sparse.to_dense(parsed[features.FRAMES], default_value='')  # [B, N]

    def motion(row):
      row = tf.boolean_mask(row, tf.strings.length(row) > 0)
      frames = tf.map_fn(lambda j: tf.cast(tf.io.decode_jpeg(j, channels=3), tf.float32), row,
                         fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))
      return tf.reduce_mean(tf.abs(frames[1:] - frames[:-1]))

    energy = tf.map_fn(motion, jpegs, fn_output_signature=tf.float32)  # [B]
    return {'probabilities': tf.sigmoid((energy - 8.0) / 3.0)[:, None]}


def pushed_model(folder: str, num_frames: int = 4, size=(32, 32), sample_fps: float = 5.0) -> str:
  """Writes the model as a pushed version (<folder>/1) with its clip config; returns it."""
  path = os.path.join(folder, '1')
  module = MotionModel()
  tf.saved_model.save(module, path, signatures={'serving_default': module.serve})
  os.makedirs(os.path.join(path, 'assets.extra'), exist_ok=True)
  with open(os.path.join(path, CLIP_CONFIG_FILE), 'w') as f:
    json.dump({'num_frames': num_frames, 'frame_size': list(size), 'sample_fps': sample_fps,
               'max_duration_s': 4.0}, f)
  return path


def footage(path: str, segments, seed: int = 0, segment_s: float = 3.0, fps: float = 10.0,
            dark: bool = False, flip: bool = False) -> str:
  """A video of violent (1) / calm (0) segments lit from above (its top half brighter, as
  most footage is); `dark`: at a fifth of the light, `flip`: upside down."""
  frames = []
  for i, label in enumerate(segments):
    rng = np.random.default_rng([seed, i])
    spec = synthetic.ClipSpec(index=i, label=int(label), width=64, height=48, fps=fps,
                              num_frames=int(segment_s * fps), container='mp4',
                              seed=int(rng.integers(2**31)))
    frames.append(synthetic.render(spec))
  video = np.concatenate(frames).astype(np.float32)
  light = np.linspace(1.6, 0.6, video.shape[1], dtype=np.float32)[None, :, None, None]
  video = video * light * (0.2 if dark else 1.0)
  if flip:
    video = video[:, ::-1]
  synthetic.write_video(path, np.clip(video, 0, 255).astype(np.uint8), fps)
  return path
