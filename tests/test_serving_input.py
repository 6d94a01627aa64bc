"""serving_default conforms frames of another size exactly as ingestion makes them
(aspect-preserving resize + centre crop), so clients may send frames at any size."""
import glob
import os

import numpy as np
import tensorflow as tf

from vivit_tfx.data import clip_example, video_reader
from vivit_tfx.models.trainer import export


def _decode(jpegs):
  return np.stack([tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs])


def test_conform_frames_matches_ingestion(video_root):
  path = sorted(glob.glob(os.path.join(video_root, 'Violence', '*.mp4')))[0]
  info = video_reader.probe(path)
  ingested = video_reader.read_clip(path, 4, (32, 32))  # what ingest stores
  native = video_reader.read_clip(path, 4, (info.height, info.width))  # a client's own frames
  assert native.frames.shape[1:3] != (32, 32) and native.indices == ingested.indices
  sent = [clip_example.encode_jpeg(f, 95) for f in native.frames]
  conformed = export.conform_frames(tf.constant(sent), (32, 32)).numpy()
  pixels = _decode(conformed).astype(np.float32)
  assert pixels.shape == (4, 32, 32, 3)
  stored = _decode(clip_example.encode_clip(ingested)).astype(np.float32)
  error = np.abs(pixels - stored).mean()  # of 255: two JPEG encodings (client, serving)
  assert error < 4.0, error
  # A plain stretch (what serving did before) is far off for a non-square source.
  stretched = tf.image.resize(native.frames.astype(np.float32), (32, 32)).numpy()
  assert np.abs(stretched - stored).mean() > 2 * error, np.abs(stretched - stored).mean()


def test_frames_of_the_right_size_pass_untouched():
  frame = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
  jpeg = clip_example.encode_jpeg(frame)
  assert export.conform_frames(tf.constant([jpeg]), (32, 32)).numpy()[0] == jpeg
