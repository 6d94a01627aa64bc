"""Drift statistics: per-clip summary features, their TFDV statistics and TFDV's drift
comparison, and the training split's statistics a model carries.

Each scored clip gets summary features (`clip_features`); sets of clips become TFDV statistics
(`statistics`), compared feature by feature with TFDV's Jensen-Shannon divergence drift
comparator (`compare`). The Trainer's export computes the training side once per model from
the train split's clip records (`records_features`: each record's clips, evaluation's views,
scored by the exported model) and writes it into the model folder (`write_model_reference`,
`REFERENCE_FILE`); `scan` and `watch` read it (`model_reference`).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from vivit_tfx.data import clip_example, features, sampling, synthetic
from vivit_tfx.data.clip_config import TFLITE_SUFFIX, clip_config_path

# Mean luma (0-255), its spread, mean absolute change between consecutive frames, the luma of
# the top half minus the bottom half (upside-down footage turns it over), P(positive class).
FEATURES = ('brightness', 'contrast', 'motion_energy', 'top_minus_bottom', 'score')
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# The train split's statistics a model carries: a TFDV DatasetFeatureStatisticsList (text).
REFERENCE_FILE = os.path.join('assets.extra', 'drift_reference.stats.pbtxt')
EXPORT_MAX_CLIPS = 256  # the export's bound: clips of the train split featured and scored
TFLITE_REFERENCE_SUFFIX = '.drift_reference.stats.pbtxt'  # beside <name>.tflite


def clip_features(frames: np.ndarray) -> Dict[str, float]:
  """[T, H, W, 3] uint8 RGB → the pixel features of one clip (all of FEATURES but the score)."""
  luma = frames.astype(np.float32) @ _LUMA  # [T, H, W]
  half = luma.shape[1] // 2
  return {'brightness': float(luma.mean()), 'contrast': float(luma.std()),
          'motion_energy': synthetic.motion_energy(frames),
          'top_minus_bottom': float(luma[:, :half].mean() - luma[:, half:].mean())}


def served_features(frames: np.ndarray, jpeg_quality: int) -> Dict[str, float]:
  """`clip_features` of frames [T, H, W, 3] as the model sees them: through the JPEG round
  trip at its ingestion quality, as the training split's statistics are (`records_features`
  reads stored JPEG clips). The round trip's noise differs from frame to frame and raises the
  motion energy enough to read as drift."""
  return clip_features(clip_example.decode_jpegs(
      [clip_example.encode_jpeg(f, jpeg_quality) for f in frames]))


def records_features(files: Sequence[str], score: Callable[[List[List[bytes]]], np.ndarray],
                     clip, max_clips: int) -> Dict[str, List[float]]:
  """FEATURES of up to `max_clips` clips of these clip-record files (GZIP when named .gz):
  each record's stored frames cut into clips of T consecutive frames (evaluation's views, as
  many as fit), each scored by `score` ([B][T] JPEG frames → probabilities [B, P]) and
  `clip.positive_score` (a ModelClipConfig): {feature: [value per clip]}."""
  # local: TensorFlow reads the records
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  rows: Dict[str, List[float]] = {f: [] for f in FEATURES}
  clips: List[List[bytes]] = []  # [clip][T] JPEG frames
  for record in tf.data.TFRecordDataset(list(files), compression):
    example = tf.train.Example.FromString(record.numpy())
    jpegs = [j for j in example.features.feature[features.FRAMES].bytes_list.value if j]
    if not jpegs:
      continue
    frames = clip_example.decode_jpegs(jpegs)  # [n, H, W, 3]
    for view in sampling.view_indices(range(len(jpegs)), clip.num_frames,
                                      max(1, len(jpegs) // clip.num_frames)):
      for name, value in clip_features(frames[view]).items():
        rows[name].append(value)
      clips.append([jpegs[i] for i in view])
    if len(clips) >= max_clips:
      break
  clips = clips[:max_clips]
  for start in range(0, len(clips), 32):
    rows['score'] += [clip.positive_score(p) for p in score(clips[start:start + 32])]
  return {name: values[:max_clips] for name, values in rows.items()}


def reference_path(model: str) -> str:
  """Where a model's training split statistics are: inside a SavedModel (`REFERENCE_FILE`), or
  beside a TFLite file (<name>.tflite → <name>.drift_reference.stats.pbtxt, as its clip
  config)."""
  if model.endswith(TFLITE_SUFFIX):
    return model[:-len(TFLITE_SUFFIX)] + TFLITE_REFERENCE_SUFFIX
  return os.path.join(model, REFERENCE_FILE)


def tflite_model_files(tflite_path: str) -> Tuple[str, str, str]:
  """The files of one TFLite model, the one list `export` claims and `run --tflite` copies:
  <name>.tflite, its clip config and its training split statistics beside it."""
  return tflite_path, clip_config_path(tflite_path), reference_path(tflite_path)


def saved_model_score(model_dir: str) -> Callable[[List[List[bytes]]], np.ndarray]:
  """The SavedModel's serving_default on clips: [B][T] JPEG frames → probabilities [B, P]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return serving_score(tf.saved_model.load(model_dir).signatures['serving_default'])


def serving_score(serve) -> Callable[[List[List[bytes]]], np.ndarray]:
  """A serving_default function (examples → {'probabilities'}) on clips: [B][T] JPEG frames →
  probabilities [B, P], each clip one record of T frames."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def score(clips: List[List[bytes]]) -> np.ndarray:
    examples = [clip_example.frames_example(jpegs) for jpegs in clips]
    return serve(examples=tf.constant(examples, tf.string))['probabilities'].numpy()

  return score


def write_model_reference(model_dir: str, train_patterns: Sequence[str], score=None,
                          max_clips: int = EXPORT_MAX_CLIPS) -> str:
  """The train split's statistics (`records_features` of up to `max_clips` clips of the
  records matching `train_patterns`, scored by `score`, default the SavedModel at `model_dir`)
  written into the model folder (`REFERENCE_FILE`); returns its path. ValueError when there
  are no records."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data.clip_config import clip_config_of  # pylint: disable=g-import-not-at-top
  files = sorted({f for p in train_patterns for f in tf.io.gfile.glob(p)})
  if not files:
    raise ValueError(f'no train split records match {", ".join(train_patterns)}')
  rows = records_features(files, score or saved_model_score(model_dir),
                          clip_config_of(model_dir), max_clips)
  if not rows['score']:
    raise ValueError(f'the train split ({len(files)} file(s)) holds no clip with frames')
  stats = statistics(rows)
  stats.datasets[0].name = (f'train split: {len(rows["score"])} clips of '
                            f'{len(files)} file(s), at most {max_clips}')
  path = reference_path(model_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text_format.MessageToString(stats))
  return path


def model_reference(model_dir: str):
  """The training split's statistics the model folder carries (DatasetFeatureStatisticsList),
  or None when it carries none (exported before models carried it, or a .tflite model);
  ValueError when the file is unreadable."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import remote_files  # pylint: disable=g-import-not-at-top
  path = reference_path(model_dir)
  if not remote_files.exists(path):
    return None
  try:
    with remote_files.open_text(path) as f:
      return text_format.Parse(f.read(), statistics_pb2.DatasetFeatureStatisticsList())
  except text_format.ParseError as e:
    raise ValueError(f'{path}: not TFDV statistics ({e})') from None


def reference_clips(reference) -> int:
  """How many training clips a reference's statistics describe."""
  return int(reference.datasets[0].num_examples)


def statistics(rows: Dict[str, Sequence[float]]):
  """TFDV statistics (DatasetFeatureStatisticsList) of {feature: values}."""
  # local: TFDV loads TFX's stack
  import pandas as pd  # pylint: disable=g-import-not-at-top
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.generate_statistics_from_dataframe(
      pd.DataFrame({k: np.asarray(v, np.float32) for k, v in rows.items()}),
      tfdv.StatsOptions(num_histogram_buckets=10))


def compare(scanned, reference, threshold: float) -> List[Dict[str, object]]:
  """TFDV's drift check of the scanned statistics against the reference's: one entry per
  feature, {'feature', 'jensen_shannon_divergence', 'threshold', 'drifted'}."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  schema = tfdv.infer_schema(reference)
  for feature in schema.feature:
    feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
  anomalies = tfdv.validate_statistics(scanned, schema, previous_statistics=reference)
  out = []
  for info in anomalies.drift_skew_info:
    for m in info.drift_measurements:
      out.append({'feature': info.path.step[0], 'jensen_shannon_divergence': round(m.value, 4),
                  'threshold': m.threshold, 'drifted': m.value > m.threshold})
  return out


def line(entry: Dict[str, object]) -> str:
  """The one line a drifted feature gets."""
  return (f"drift: {entry['feature']}: Jensen-Shannon divergence "
          f"{entry['jensen_shannon_divergence']:.3f} from the training split > "
          f"{entry['threshold']:g}")
