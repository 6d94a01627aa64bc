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


def _scene(label: int, key, segment_s: float, fps: float) -> np.ndarray:
  """One synthetic scene (violent 1, calm 0) drawn from the random key: [F, H, W, 3]."""
  spec = synthetic.ClipSpec(index=0, label=int(label), width=64, height=48, fps=fps,
                            num_frames=int(segment_s * fps), container='mp4',
                            seed=int(np.random.default_rng(key).integers(2**31)))
  return synthetic.render(spec)


def _write_lit(path: str, scenes, fps: float, dark: bool, flip: bool) -> str:
  """The scenes one after another lit from above (`footage`), written to `path`."""
  video = np.concatenate(scenes).astype(np.float32)
  light = np.linspace(1.6, 0.6, video.shape[1], dtype=np.float32)[None, :, None, None]
  video = video * light * (0.2 if dark else 1.0)
  if flip:
    video = video[:, ::-1]
  synthetic.write_video(path, np.clip(video, 0, 255).astype(np.uint8), fps)
  return path


def footage(path: str, segments, seed: int = 0, segment_s: float = 3.0, fps: float = 10.0,
            dark: bool = False, flip: bool = False) -> str:
  """A video of violent (1) / calm (0) segments lit from above (its top half brighter, as
  most footage is); `dark`: at a fifth of the light, `flip`: upside down."""
  return _write_lit(path, [_scene(label, [seed, i], segment_s, fps)
                           for i, label in enumerate(segments)], fps, dark, flip)


def footage_set(folder: str, kind: str = 'train', count: int = 8, seed: int = 10) -> str:
  """`count` 4 s videos of one scene each, in class folders (NonViolence, Violence in turn);
  kind 'dark' or 'upside-down' as `footage` makes them. Returns the folder."""
  for i in range(count):
    label = ('NonViolence', 'Violence')[i % 2]
    os.makedirs(os.path.join(folder, label), exist_ok=True)
    footage(os.path.join(folder, label, f'c{i}.mp4'), (i % 2,), seed=seed + i, segment_s=4.0,
            dark=kind == 'dark', flip=kind == 'upside-down')
  return folder


def footage_set_joined(path: str, kind: str = 'train', count: int = 8, seed: int = 10,
                       repeat: int = 1) -> str:
  """The scenes of `footage_set` one after another in one video (what a camera would see),
  `repeat` times over."""
  scenes = [_scene(i % 2, [seed + i, 0], 4.0, 10.0) for i in range(count)]
  return _write_lit(path, scenes * repeat, 10.0, kind == 'dark', kind == 'upside-down')


def training_clips(videos: str, clips_dir: str, clip) -> str:
  """`videos` ingested as a train split only (clips_dir/train/*.tfrecord); returns clips_dir."""
  from vivit_tfx.data import ingest  # pylint: disable=g-import-not-at-top
  ingest.ingest(videos, clips_dir, clip=clip, splits=ingest.SplitConfig(train=1.0, eval=0.0,
                                                                         test=0.0),
                workers=1, progress=False)
  return clips_dir
