"""serving_default conforms frames of another size exactly as ingestion makes them
(aspect-preserving resize + centre crop), so clients may send frames at any size."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import clip_example, video_reader
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.data.frames import resize_and_crop_array
from vivit_tfx.inference import model_scorer
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


def test_a_batchs_frames_decode_in_one_graph_as_serving_conforms_them():
  """`model_scorer.jpeg_pixels` (the TFLite scorer's JPEG round trip, one compiled graph for a
  batch): each frame as `tf.io.decode_jpeg` gives it, and a frame of another size (colour or
  grey) resized and cropped, JPEG-encoded at the clip's quality and decoded again, as
  serving_default conforms it; clips of another length are refused."""
  clip = ModelClipConfig(num_frames=2, frame_size=(32, 32), jpeg_quality=90)
  rng = np.random.default_rng(3)
  frames = [rng.integers(0, 255, shape, np.uint8)
            for shape in ((32, 32, 3), (48, 64, 3), (71, 33, 3), (20, 90, 1))]
  jpegs = [tf.io.encode_jpeg(f).numpy() for f in frames]

  def one(jpeg):  # the eager path, frame by frame
    frame = tf.io.decode_jpeg(jpeg, channels=3).numpy()
    if frame.shape[:2] != (32, 32):
      again = tf.io.encode_jpeg(resize_and_crop_array(frame, (32, 32)), quality=90)
      frame = tf.io.decode_jpeg(again, channels=3).numpy()
    return frame

  pixels = model_scorer.jpeg_pixels([jpegs[:2], jpegs[2:]], clip)  # [2, 2, 32, 32, 3]
  expected = np.stack([one(j) for j in jpegs]).reshape(2, 2, 32, 32, 3)
  np.testing.assert_array_equal(pixels, expected)
  assert model_scorer.jpeg_pixels([], clip).shape == (0, 2, 32, 32, 3)
  with pytest.raises(ValueError, match='every clip must have 2 frames'):
    model_scorer.jpeg_pixels([jpegs[:1], jpegs[1:3]], clip)
