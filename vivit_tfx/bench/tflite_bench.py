"""What TFLite costs in accuracy: the SavedModel and its TFLite versions (float32, float16,
int8: `inference/tflite_export.py`, converted in memory) on the same clips of a split, at video
level (each record's K evaluation views averaged, as serving_default scores a video).

Prints, per model: its size, video-level accuracy (and the change from the SavedModel's, in
points), AUC of the positive class, the largest difference of any probability from the
SavedModel's, the predicted classes that differ, and milliseconds per video.
Run: `vivit-tfx bench export --split test [--model-dir DIR] [--clips-dir DIR]
[--quantize none float16 int8 [--int8 norm-float|full] | --tflite FILE…]`.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from vivit_tfx.bench.export_size import directory_bytes
from vivit_tfx.bench.views_bench import binary_auc
from vivit_tfx.data.clip_config import ModelClipConfig, predicted_label
from vivit_tfx.inference import model_scorer, predict, tflite_export

# Options that ask `bench export` for this benchmark rather than the export-size table.
OPTIONS = ('--split', '--model-dir', '--clips-dir', '--quantize', '--serving-dir',
           '--model-name', '--calibration-clips', '--tflite', '--int8')


def wanted(argv: Sequence[str]) -> bool:
  """Whether `bench export`'s options are this benchmark's."""
  return any(a.split('=')[0] in OPTIONS for a in argv)


def _timed(score: Callable, records: List[List[bytes]], batch_size: int):
  """(probabilities [R, P], seconds) of `score` over the records in batches."""
  start = time.perf_counter()
  out = np.concatenate([score(records[i:i + batch_size])
                        for i in range(0, len(records), batch_size)])
  return out, time.perf_counter() - start


def row(name: str, size: int, probs: np.ndarray, seconds: float, reference: np.ndarray,
        labels: np.ndarray, clip: ModelClipConfig) -> Dict:
  predicted = np.array([predicted_label(p) for p in probs])
  scores = np.array([clip.positive_score(p) for p in probs])
  same = np.array([predicted_label(p) for p in reference])
  return {'model': name, 'mib': size / 2**20, 'videos': len(labels),
          'accuracy': float(np.mean(predicted == labels)),
          'auc': binary_auc(scores, labels) if len(clip.class_names) == 2 else float('nan'),
          'max_abs_diff': float(np.abs(probs - reference).max()),
          'classes_changed': int(np.sum(predicted != same)),
          'ms_per_video': 1000 * seconds / max(1, len(labels))}


def _name(quantize: str, int8: str) -> str:
  """'float16', 'int8', or 'int8 (full)' for an int8 mode other than the default."""
  other = quantize == 'int8' and int8 != tflite_export.INT8_MODES[0]
  return tflite_export.FILE_STEMS[quantize] + (f' ({int8})' if other else '')


def measure(model_dir: str, clips_dir: str, split: str = 'test',
            quantizations: Sequence[str] = tflite_export.QUANTIZATIONS,
            calibration_count: int = tflite_export.CALIBRATION_CLIPS,
            batch_size: int = 16, files: Sequence[str] = (),
            int8: str = tflite_export.INT8_MODES[0]) -> List[Dict]:
  """Rows of `format_table`: the SavedModel, then its TFLite versions converted in memory
  (`quantizations`), or the exported `.tflite` files given (`files`, named by their stem)."""
  records, labels = tflite_export.split_records(clips_dir, split)
  saved = model_scorer.SavedModelScorer(model_dir)
  reference, seconds = _timed(saved.score_records, records, batch_size)
  rows = [row('SavedModel float32', directory_bytes(model_dir)['total'], reference, seconds,
              reference, labels, saved.clip)]
  scorers = ([(os.path.basename(f)[:-len('.tflite')], model_scorer.TFLiteScorer(f))
              for f in files] if files else
             [(_name(q, int8), s) for q, s in tflite_export.in_memory(
                 model_dir, quantizations, clips_dir, calibration_count, int8)])
  for name, scorer in scorers:
    probs, seconds = _timed(scorer.score_records, records, batch_size)
    rows.append(row(f'TFLite {name}', scorer.size, probs, seconds, reference, labels,
                    saved.clip))
  return rows


def format_table(rows: List[Dict]) -> str:
  base = rows[0]['accuracy']
  lines = ['| model | size (MiB) | video-level accuracy | change (points) | AUC | '
           'max abs. probability difference | classes changed | ms per video |',
           '|' + '---|' * 8]
  for r in rows:
    lines.append(f"| {r['model']} | {r['mib']:.2f} | {r['accuracy']:.4f} | "
                 f"{100 * (r['accuracy'] - base):+.2f} | {r['auc']:.4f} | "
                 f"{r['max_abs_diff']:.2e} | {r['classes_changed']} / {r['videos']} | "
                 f"{r['ms_per_video']:.1f} |")
  return '\n'.join(lines)


GOALS = {'TFLite float16': 0.2, 'TFLite int8': 1.0}  # points of accuracy it may lose (issue 31)


def goal_line(rows: List[Dict]) -> str:
  """Whether each quantised model keeps the SavedModel's video-level accuracy within its goal."""
  base = rows[0]['accuracy']
  parts = []
  for r in rows:
    goal = GOALS.get(r['model'].split(' (')[0])  # 'TFLite int8 (full)': int8's goal
    if goal is not None:
      met = 100 * (base - r['accuracy']) <= goal + 1e-9
      parts.append(f"{r['model']} {'met' if met else 'NOT met'} (at most {goal} points lost)")
  return 'goal: ' + ('; '.join(parts) if parts else 'no quantised model measured')


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench export', description=__doc__)
  parser.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  parser.add_argument('--serving-dir', default='output/serving')
  parser.add_argument('--model-name', default='vivit_violence')
  parser.add_argument('--clips-dir', default='data/clips',
                      help='ingested clips: the split scored, and train for int8 calibration')
  parser.add_argument('--split', default='test')
  parser.add_argument('--quantize', nargs='+', default=list(tflite_export.QUANTIZATIONS),
                      choices=tflite_export.QUANTIZATIONS)
  parser.add_argument('--calibration-clips', type=int, default=tflite_export.CALIBRATION_CLIPS)
  parser.add_argument('--int8', default=tflite_export.INT8_MODES[0],
                      choices=tflite_export.INT8_MODES, help='as `vivit-tfx export --int8`')
  parser.add_argument('--tflite', nargs='+', default=[], metavar='FILE',
                      help='score these exported .tflite files instead of converting')
  args = parser.parse_args(argv)
  model_dir = args.model_dir or predict.newest_version(args.serving_dir, args.model_name)
  rows = measure(model_dir, args.clips_dir, args.split, args.quantize,
                 args.calibration_clips, files=args.tflite, int8=args.int8)
  print(f'model: {model_dir}; clips: {args.clips_dir} ({args.split} split)')
  print(format_table(rows))
  print(goal_line(rows))
  print(json.dumps(rows))
  return 0
