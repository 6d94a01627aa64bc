"""Drift: does the footage being scored still look like the training data?

Each scored clip gets summary features (`clip_features`); the scan's clips and the training
split's records become TFDV statistics, compared feature by feature with TFDV's
Jensen-Shannon divergence drift comparator (`compare`). The training side is computed from
the clip records of the train split (ingest's `train/` shards or a TFX Examples artifact's
`Split-train/`): the features of each record's central clip (the frames evaluation scores)
and the model's score of the record.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from vivit_tfx.data import clip_example, features, sampling, synthetic

# Mean luma (0-255), its spread, mean absolute change between consecutive frames, the luma of
# the top half minus the bottom half (upside-down footage turns it over), P(positive class).
FEATURES = ('brightness', 'contrast', 'motion_energy', 'top_minus_bottom', 'score')
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def clip_features(frames: np.ndarray) -> Dict[str, float]:
  """[T, H, W, 3] uint8 RGB → the pixel features of one clip (all of FEATURES but the score)."""
  luma = frames.astype(np.float32) @ _LUMA  # [T, H, W]
  half = luma.shape[1] // 2
  return {'brightness': float(luma.mean()), 'contrast': float(luma.std()),
          'motion_energy': synthetic.motion_energy(frames),
          'top_minus_bottom': float(luma[:, :half].mean() - luma[:, half:].mean())}


def _split_files(clips_dir: str) -> List[str]:
  """The train split's record files under `clips_dir` (any tf.io.gfile URI)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for pattern in ('train/*.tfrecord*', 'Split-train/*'):
    files = sorted(tf.io.gfile.glob(f"{clips_dir.rstrip('/')}/{pattern}"))
    if files:
      return files
  raise ValueError(f'{clips_dir}: no train split (train/*.tfrecord of `vivit-tfx ingest`, or '
                   "Split-train/ of a TFX Examples artifact)")


def reference_features(clips_dir: str, model_dir: str, clip,
                       max_clips: int = 2000) -> Dict[str, List[float]]:
  """FEATURES of up to `max_clips` clips of the train split's records: each record's stored
  frames cut into clips of T consecutive frames (evaluation's views, as many as fit), each
  scored by the model as the scan scores a window: {feature: [value per clip]}."""
  # local: TensorFlow reads the records and runs the model
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import model_scorer  # pylint: disable=g-import-not-at-top
  files = _split_files(clips_dir)
  compression = 'GZIP' if files[0].endswith('.gz') else ''
  rows: Dict[str, List[float]] = {f: [] for f in FEATURES}
  clips: List[List[bytes]] = []  # [clip][T] JPEG frames
  for record in tf.data.TFRecordDataset(files, compression):
    example = tf.train.Example.FromString(record.numpy())
    jpegs = [j for j in example.features.feature[features.FRAMES].bytes_list.value if j]
    frames = clip_example.decode_jpegs(jpegs)  # [n, H, W, 3]
    for view in sampling.view_indices(range(len(jpegs)), clip.num_frames,
                                      max(1, len(jpegs) // clip.num_frames)):
      for name, value in clip_features(frames[view]).items():
        rows[name].append(value)
      clips.append([jpegs[i] for i in view])
    if len(clips) >= max_clips:
      break
  scorer = model_scorer.load_scorer(model_dir)
  for start in range(0, len(clips), 32):
    rows['score'] += [clip.positive_score(p) for p in scorer.score_jpegs(clips[start:start + 32])]
  return {name: values[:max_clips] for name, values in rows.items()}


def reference_of_model(model_dir: str, metadata_path: str) -> str:
  """The Examples whose train split the model at `model_dir` (a pushed version) was trained
  on, found in ML Metadata: upstream of its PushedModel (matched by version), the Examples
  that StatisticsGen read. Raises ValueError saying why when there are none."""
  from vivit_tfx.audit import lineage, metadata  # pylint: disable=g-import-not-at-top
  metadata.check_sqlite_store(metadata_path)
  store = metadata.open_sqlite(metadata_path, read_only=True)
  version = model_dir.rstrip('/').rsplit('/', 1)[-1]
  pushed = [a for name in metadata.type_names('PushedModel')
            for a in store.get_artifacts_by_type(name)
            if str(metadata.property_value(a, 'pushed_version')) == version]
  if not pushed:
    raise ValueError(f'{metadata_path} has no pushed model of version {version}')
  try:
    graph = lineage.upstream(store, pushed[-1])
  except Exception as e:  # pylint: disable=broad-except  # the check is skipped, not the scan
    raise ValueError(f'{metadata_path}: the lineage of model version {version} could not be '
                     f'read ({type(e).__name__}: {e})') from e
  readers = {k for k, n in graph.nodes.items() if n.kind == 'execution' and  # local, KFP
             'StatisticsGen' in (n.label, n.type.rsplit('.', 1)[-1])}
  found = [graph.nodes[a].label for a, x, key in graph.edges if x in readers and key == 'examples']
  if not found:
    raise ValueError(f'{metadata_path}: no Examples upstream of model version {version}')
  return found[-1]


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
