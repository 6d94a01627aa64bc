"""Drift in `scan`: the training split to compare with when the model carries no statistics of
it (`data.drift_stats`): the clip records under a folder (ingest's `train/` shards or a TFX
Examples artifact's `Split-train/`, `reference_features`), or the Examples the model was
trained on, found in ML Metadata (`reference_of_model`).
"""
from __future__ import annotations

from typing import Dict, List

from vivit_tfx.data import drift_stats


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
  """`drift_stats.FEATURES` of up to `max_clips` clips of the train split under `clips_dir`
  (`drift_stats.records_features`), scored by the model (a SavedModel or a .tflite model) as
  the scan scores a window."""
  from vivit_tfx.inference import model_scorer  # pylint: disable=g-import-not-at-top
  return drift_stats.records_features(_split_files(clips_dir),
                                      model_scorer.load_scorer(model_dir).score_jpegs, clip,
                                      max_clips)


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


