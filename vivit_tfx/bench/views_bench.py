"""Clip-level against video-level accuracy of a pushed model on a split of ingested clips.

Video-level: `serving_default` on each record (K views averaged, as TFMA scores it).
Clip-level: every one of the K views sent alone (a record holding only that clip), each scored
as its own example. Run: `vivit-tfx bench views --model-dir DIR --clips-dir DIR [--split test]`.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from vivit_tfx.data import features
from vivit_tfx.inference import predict
from vivit_tfx.models.trainer import clip_views


def _predicted(probabilities: np.ndarray) -> np.ndarray:
  """[B, 1] or [B, K] probabilities → [B] predicted labels (`predict.predicted_label`)."""
  return np.array([predict.predicted_label(row) for row in probabilities], int)


def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """ROC AUC of scores for labels {0, 1} (ties count half); NaN if one class."""
  return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float('nan')


def accuracies(model_dir: str, clips_dir: str, split: str = 'test',
               batch_size: int = 16) -> Dict[str, float]:
  clip = predict.clip_config_of(model_dir)
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  files = sorted(glob.glob(os.path.join(clips_dir, split, '*.tfrecord')))
  video_hits: List[int] = []
  clip_hits: List[int] = []
  scores: List[np.ndarray] = []
  truth: List[np.ndarray] = []
  records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
  for start in range(0, len(records), batch_size):
    batch = records[start:start + batch_size]
    parsed = tf.io.parse_example(batch, {
        features.FRAMES: tf.io.FixedLenFeature([clip.stored_frames], tf.string),
        features.LABEL: tf.io.FixedLenFeature([1], tf.int64)})
    labels = parsed[features.LABEL].numpy()[:, 0]
    probabilities = serve(examples=tf.constant(batch))['probabilities'].numpy()
    video_hits += list(_predicted(probabilities) == labels)
    scores.append(probabilities[:, -1])
    truth.append(labels)
    views = clip_views.view_records(parsed[features.FRAMES], clip.num_frames, clip.num_views)
    singles = []
    for row in views.numpy():  # [B*K] records, one clip each
      example = tf.train.Example()
      example.features.feature[features.FRAMES].bytes_list.value.extend(
          [f for f in row if f])
      singles.append(example.SerializeToString())
    per_clip = _predicted(serve(examples=tf.constant(singles))['probabilities'].numpy())
    clip_hits += list(per_clip == np.repeat(labels, clip.num_views))
  return {'videos': len(video_hits), 'views_per_video': clip.num_views,
          'clip_level_accuracy': float(np.mean(clip_hits)),
          'video_level_accuracy': float(np.mean(video_hits)),
          'video_level_auc': binary_auc(np.concatenate(scores), np.concatenate(truth))
                             if len(clip.class_names) == 2 else float('nan')}


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench views', description=__doc__)
  parser.add_argument('--model-dir', required=True)
  parser.add_argument('--clips-dir', required=True)
  parser.add_argument('--split', default='test')
  args = parser.parse_args(argv)
  row = accuracies(args.model_dir, args.clips_dir, args.split)
  print('| videos | views (K) | clip-level accuracy | video-level accuracy | video-level AUC |\n'
        '|---|---|---|---|---|\n'
        f'| {row["videos"]} | {row["views_per_video"]} | {row["clip_level_accuracy"]:.3f} | '
        f'{row["video_level_accuracy"]:.3f} | {row["video_level_auc"]:.3f} |')
  print(json.dumps(row))
  return 0
