"""Ingestion step 2: a sampled clip ↔ `tf.train.Example` (the raw record every component reads).

Feature names live in `data.features`, the one place that names them. JPEG encoding needs
only OpenCV, so ingestion workers encode without importing TensorFlow; the proto is built
where TensorFlow is already loaded.
"""
from __future__ import annotations

import os
from typing import Dict, List

import cv2
import numpy as np

from vivit_tfx.data.video_reader import Clip, VideoInfo
from vivit_tfx.data import features


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
  """RGB uint8 [H, W, 3] → JPEG bytes."""
  ok, buf = cv2.imencode('.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise ValueError('JPEG encoding failed')
  return buf.tobytes()


def encode_clip(clip: Clip, jpeg_quality: int = 90) -> List[bytes]:
  """[T, H, W, 3] frames → T JPEG byte strings."""
  return [encode_jpeg(f, jpeg_quality) for f in clip.frames]


def clip_to_example(clip: Clip, label: int, video_id: str, source_path: str,
                    jpeg_quality: int = 90):
  """Builds the raw clip record: T JPEG frames, the label and the source's metadata."""
  return to_example(encode_clip(clip, jpeg_quality), clip.info, label, video_id, source_path)


# Upper edges (seconds) of the duration bands a record's `duration_band` names.
DURATION_BANDS_S = (5, 10, 30)


def duration_band(seconds: float) -> str:
  """The evaluation slice of a video's duration: '0-5s', '5-10s', '10-30s' or '30s+'."""
  low = 0
  for high in DURATION_BANDS_S:
    if seconds < high:
      return f'{low}-{high}s'
    low = high
  return f'{low}s+'


def to_example(jpegs: List[bytes], info: VideoInfo, label: int, video_id: str,
               source_path: str, source: str = ''):
  """JPEG frames + metadata → tf.train.Example. `source` (ingestion's, `layouts.source_of`):
  the record also carries its evaluation slices, `source` and `duration_band`."""
  # local: the CLI imports data/ to build its options; it must not wait for TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

  def _int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

  def _float(value):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))

  feature: Dict[str, 'tf.train.Feature'] = {
      features.FRAMES: _bytes(list(jpegs)),
      features.LABEL: _int(label),
      features.VIDEO_ID: _bytes([video_id.encode('utf-8')]),
      features.SOURCE_PATH: _bytes([source_path.encode('utf-8', 'surrogateescape')]),
      features.CONTAINER: _bytes([container_of(source_path).encode('utf-8')]),
      features.NUM_FRAMES_ORIGINAL: _int(info.num_frames),
      features.FPS: _float(info.fps),
      features.DURATION_S: _float(info.duration_s),
      features.WIDTH: _int(info.width),
      features.HEIGHT: _int(info.height),
  }
  if source:
    feature[features.SOURCE] = _bytes([source.encode('utf-8', 'surrogateescape')])
    feature[features.DURATION_BAND] = _bytes([duration_band(info.duration_s).encode()])
  return tf.train.Example(features=tf.train.Features(feature=feature))


def container_of(path: str) -> str:
  """File extension without the dot, lower case ('mp4', 'avi', …); used for slicing."""
  return os.path.splitext(path)[1].lower().lstrip('.') or 'none'


def frames_example(jpegs: List[bytes]) -> bytes:
  """A serialised tf.Example holding only these frames: what serving_default reads of a record."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  example = tf.train.Example()
  example.features.feature[features.FRAMES].bytes_list.value.extend(jpegs)
  return example.SerializeToString()


def decode_frames(example) -> np.ndarray:
  """Decodes the JPEG frames of a record back to [n, H, W, 3] uint8 RGB (empty slots left
  out: n ≤ the record's frame slots)."""
  return decode_jpegs(example.features.feature[features.FRAMES].bytes_list.value)


def decode_jpegs(jpegs) -> np.ndarray:
  """JPEG byte strings ('' = empty slot, left out) → [n, H, W, 3] uint8 RGB."""
  return np.stack([
      cv2.cvtColor(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR),
                   cv2.COLOR_BGR2RGB) for f in jpegs if f
  ])
