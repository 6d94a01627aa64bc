"""Non-transformer baselines on an ingest output's own splits: what the benchmark allows.

Trains on `train`, scores `eval` and `test` at video level (K evaluation views averaged, the
clips of `data.sampling`: a random clip per visit in training) and prints accuracy, AUC and
train time per model and seed:
  c3d        a small 3D CNN (3 blocks of 3x3x3 convolutions);
  r2plus1d   a (2+1)D CNN (each block a 1x3x3 spatial then a 3x1x1 temporal convolution);
  logreg     logistic regression on frame-difference statistics of all the record's frames;
  c3d-diff   (not by default) c3d given each frame's difference from the previous one as 3 more
             channels (the hybrid's `conv_input='rgb+diff'`);
  logreg-clip (not by default) the logistic regression on windows of one clip's length (half
             overlapping), a video's score the mean of its windows': how much one clip holds;
  vivit      (not by default) the `vivit-tiny` preset with its own recipe (`models.training`),
             trained from scratch by the same loop: the transformer on the same footing;
  hybrid     (not by default) the `vivit-hybrid-tiny` preset (conv tokenizer), the same way.
Run: `vivit-tfx bench baselines --clips-dir DIR [--models c3d,r2plus1d,logreg --seeds 0,1]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
from keras import layers
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import tensorflow as tf

from vivit_tfx.data import clip_example, features, ingest_output, sampling
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import ConvTokenizer
from vivit_tfx.models.network.vivit_config import preset
from vivit_tfx.models.trainer import augment, training

MODELS = ('c3d', 'r2plus1d', 'logreg')
CHOICES = MODELS + ('vivit', 'hybrid', 'c3d-diff', 'logreg-clip')
TRANSFORMERS = {'vivit': 'vivit-tiny', 'hybrid': 'vivit-hybrid-tiny'}
SPLITS = ('eval', 'test')


@dataclasses.dataclass
class Videos:
  """One split of an ingest output, decoded: each record's stored frames and its label."""
  frames: List[np.ndarray]  # per video [n, H, W, 3] uint8, n ≤ the record's slots
  labels: np.ndarray        # [V] int


def load_split(clips_dir: str, split: str) -> Videos:
  """Decodes every record of `<clips_dir>/<split>/*.tfrecord`."""
  files = sorted(glob.glob(os.path.join(clips_dir, split, '*.tfrecord')))
  if not files:
    raise FileNotFoundError(f'{clips_dir}: no {split}/*.tfrecord (not an ingest output?)')
  frames, labels = [], []
  for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
    example = tf.train.Example.FromString(record)
    frames.append(clip_example.decode_frames(example))
    labels.append(example.features.feature[features.LABEL].int64_list.value[0])
  return Videos(frames, np.array(labels))


def clip_length(clips_dir: str) -> int:
  """T of the ingest output (its marker's clip settings; 8 when absent)."""
  made = ingest_output.read_provenance(clips_dir)
  return int(made.settings['clip']['num_frames']) if made else 8


def view_clips(videos: Videos, num_frames: int, num_views: int) -> np.ndarray:
  """The K evaluation views of every video (`sampling.view_indices`): [V, K, T, H, W, 3]."""
  return np.stack([f[sampling.view_indices(range(len(f)), num_frames, num_views)]
                   for f in videos.frames])


def random_clips(videos: Videos, index: np.ndarray, num_frames: int,
                 rng: np.random.Generator) -> np.ndarray:
  """One training clip (random position and speed, `sampling.random_clip`) of each chosen
  video: [B, T, H, W, 3]."""
  return np.stack([videos.frames[i][sampling.random_clip(len(videos.frames[i]), num_frames, rng)]
                   for i in index])


# --- Logistic regression on frame-difference statistics ------------------------------------
def motion_features(frames: np.ndarray) -> np.ndarray:
  """[n, H, W, 3] uint8 → [F] statistics of the frame differences (how much moves, how
  suddenly, how concentrated), aggregated over time."""
  gray = frames.astype(np.float32).mean(-1) / 255.0  # [n, H, W]
  if len(gray) < 3:
    gray = np.concatenate([gray] * 3)
  diff = np.abs(np.diff(gray, axis=0))  # [n-1, H, W] speed
  accel = np.abs(np.diff(gray, 2, axis=0))  # [n-2, H, W] acceleration
  per_frame = []  # each [n-1] or [n-2]
  for d in (diff, accel):
    flat = d.reshape(len(d), -1)
    per_frame += [flat.mean(1), np.percentile(flat, 99, axis=1), (flat > 0.1).mean(1)]
  energy = per_frame[0]
  per_frame.append(np.abs(np.diff(energy)) if len(energy) > 1 else energy * 0)  # bursts
  stats = []
  for series in per_frame:
    stats += [series.mean(), series.std(), series.max(), np.median(series),
              series.std() / (series.mean() + 1e-6)]
  return np.array(stats, np.float64)


class MotionLogReg:
  """Standardised frame-difference statistics → logistic regression (scikit-learn): of the
  whole record, or (`window` frames) of each window of that length, half overlapping, a
  video's probability the mean of its windows'."""

  def __init__(self, seed: int, window: int = 0):
    self.model = make_pipeline(StandardScaler(),
                               LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    self.window = window

  def _windows(self, frames: np.ndarray) -> List[np.ndarray]:
    if not self.window:
      return [frames]
    starts = range(0, max(1, len(frames) - self.window + 1), max(1, self.window // 2))
    return [frames[s:s + self.window] for s in starts]

  def _features(self, videos: Videos):
    """[W, F] statistics of every window, and [W] the video each came from."""
    rows, owners = [], []
    for i, frames in enumerate(videos.frames):
      for window in self._windows(frames):
        rows.append(motion_features(window))
        owners.append(i)
    return np.stack(rows), np.array(owners)

  def fit(self, videos: Videos) -> None:
    x, owners = self._features(videos)
    self.model.fit(x, videos.labels[owners])

  def predict(self, videos: Videos) -> np.ndarray:
    """[V] probability of label 1."""
    x, owners = self._features(videos)
    p = self.model.predict_proba(x)[:, 1]
    return np.bincount(owners, p, len(videos.labels)) / np.bincount(owners,
                                                                    minlength=len(videos.labels))


# --- Small video CNNs ----------------------------------------------------------------------
def _block(x, filters: int, factorised: bool, pool):
  if factorised:  # (2+1)D: space, then time
    x = layers.Conv3D(filters, (1, 3, 3), padding='same', use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv3D(filters, (3, 1, 1), padding='same', use_bias=False)(x)
  else:
    x = layers.Conv3D(filters, 3, padding='same', use_bias=False)(x)
  x = layers.ReLU()(layers.BatchNormalization()(x))
  return layers.MaxPool3D(pool)(x)


def build_cnn(kind: str, input_shape: Sequence[int], widths=(16, 32, 64)):
  """[B, T, H, W, 3] normalised clips → [B, 1] logits. A stride-2 spatial stem, then blocks
  that halve space (the first) or space and time (the others). '-diff' kinds give the stem
  each frame's difference from the previous one too (`ConvTokenizer.with_differences`)."""
  inputs = keras.Input(tuple(input_shape))
  x = (keras.layers.Lambda(ConvTokenizer.with_differences)(inputs) if kind.endswith('-diff')
       else inputs)
  x = keras.layers.Conv3D(widths[0], (1, 3, 3), strides=(1, 2, 2), padding='same')(x)
  for i, width in enumerate(widths):
    x = _block(x, width, kind == 'r2plus1d', (1, 2, 2) if i == 0 else (2, 2, 2))
  x = keras.layers.GlobalAveragePooling3D()(x)
  x = keras.layers.Dropout(0.3)(x)
  return keras.Model(inputs, keras.layers.Dense(1)(x), name=kind)


def cnn_builder(kind: str, learning_rate: float = 1e-3):
  """(input shape, steps) → a compiled CNN (AdamW, cosine decay)."""
  def build(shape, steps):
    model = build_cnn(kind, shape)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model
  return build


def channel_statistics(videos: Videos):
  """Per-channel mean and std ([3] each, pixels in [0, 1]) over every frame of the split."""
  total, squares, count = np.zeros(3), np.zeros(3), 0
  for frames in videos.frames:
    pixels = frames.reshape(-1, 3).astype(np.float32) / 255.0  # [n*H*W, 3]
    total += pixels.sum(0, dtype=np.float64)
    squares += np.square(pixels).sum(0, dtype=np.float64)
    count += len(pixels)
  mean = total / count
  return mean.astype(np.float32), np.sqrt(squares / count - mean ** 2).astype(np.float32) + 1e-3


def vivit_builder(preset_name: str = 'vivit-tiny', **overrides):
  """(input shape, steps) → the preset's ViViT for that clip (and `overrides`), compiled
  with its recipe."""
  def build(shape, steps):
    config = preset(preset_name, **{'num_frames': shape[0], 'image_size': tuple(shape[1:3]),
                                    **overrides})
    model = initialised_vivit(config)
    training.compile_model(model, config, total_steps=steps)
    return model
  return build


class ClipClassifier:
  """A clip model trained on random clips (augmented as the ViViT's: `models.augment`),
  scored on K views averaged. `build(input_shape, steps)` returns a compiled Keras model with
  one logit."""

  def __init__(self, build: Callable, seed: int, num_frames: int, num_views: int, steps: int,
               batch_size: int = 16):
    keras.utils.set_random_seed(seed)
    self.build, self.seed, self.steps, self.batch_size = build, seed, steps, batch_size
    self.num_frames, self.num_views = num_frames, num_views
    self.model = None
    self.mean = self.std = None

  def _normalise(self, clips: np.ndarray) -> np.ndarray:
    return (clips.astype(np.float32) / 255.0 - self.mean) / self.std

  def fit(self, videos: Videos) -> None:
    self.mean, self.std = channel_statistics(videos)
    shape = (self.num_frames,) + videos.frames[0].shape[1:]
    self.model = self.build(shape, self.steps)
    rng = np.random.default_rng(self.seed)

    def batches():  # random videos, a random clip of each: [B, T, H, W, 3] uint8, [B, 1]
      while True:
        index = rng.choice(len(videos.labels), self.batch_size, replace=False)
        yield (random_clips(videos, index, self.num_frames, rng),
               videos.labels[index, None].astype(np.float32))

    mean, std = tf.constant(self.mean, tf.float32), tf.constant(self.std, tf.float32)
    data = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((self.batch_size,) + shape, tf.uint8),
        tf.TensorSpec((self.batch_size, 1), tf.float32)))
    data = data.map(lambda x, y: (augment.augment((tf.cast(x, tf.float32) / 255.0 - mean) / std),
                                  y)).prefetch(2)
    self.model.fit(data, steps_per_epoch=self.steps, epochs=1, verbose=0)

  def predict(self, videos: Videos) -> np.ndarray:
    """[V] probability of label 1: the K views' probabilities averaged."""
    views = view_clips(videos, self.num_frames, self.num_views)  # [V, K, T, H, W, 3]
    flat = self._normalise(views.reshape((-1,) + views.shape[2:]))
    logits = self.model.predict(flat, batch_size=32, verbose=0)[:, 0]  # [V*K]
    return (1 / (1 + np.exp(-logits))).reshape(len(videos.labels), -1).mean(1)


# --- The benchmark -------------------------------------------------------------------------
def scores(labels: np.ndarray, probabilities: np.ndarray) -> Dict[str, float]:
  auc = roc_auc_score(labels, probabilities) if len(set(labels)) == 2 else float('nan')
  return {'accuracy': float(np.mean((probabilities >= 0.5) == labels)), 'auc': float(auc)}


def make_model(name: str, seed: int, num_frames: int, num_views: int, steps: int,
               vivit_overrides: Optional[Dict] = None):
  if name in ('logreg', 'logreg-clip'):
    return MotionLogReg(seed, window=num_frames if name == 'logreg-clip' else 0)
  build = (vivit_builder(TRANSFORMERS[name], **(vivit_overrides or {}))
           if name in TRANSFORMERS else cnn_builder(name))
  return ClipClassifier(build, seed, num_frames, num_views, steps)


def run(clips_dir: str, models: Sequence[str] = MODELS, seeds: Sequence[int] = (0, 1),
        steps: int = 300, num_views: int = 4,
        make: Callable = make_model, log=print, **make_options) -> List[Dict]:
  """One row per (model, seed): video-level accuracy and AUC on eval and test, train time."""
  data = {s: load_split(clips_dir, s) for s in ('train',) + SPLITS}
  if len(set(data['train'].labels)) != 2:
    raise ValueError(f'{clips_dir}: baselines are binary; train holds labels '
                     f'{sorted(set(data["train"].labels))}')
  num_frames = clip_length(clips_dir)
  rows = []
  for name in models:
    for seed in seeds:
      model = make(name, seed, num_frames, num_views, steps, **make_options)
      start = time.perf_counter()
      model.fit(data['train'])
      row = {'model': name, 'seed': seed, 'train_s': round(time.perf_counter() - start, 1)}
      for split in SPLITS:
        for k, v in scores(data[split].labels, model.predict(data[split])).items():
          row[f'{split}_{k}'] = v
      log(json.dumps(row))
      rows.append(row)
  return rows


def table(rows: List[Dict]) -> str:
  lines = ['| model | seed | eval acc | eval AUC | test acc | test AUC | train time |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["model"]} | {r["seed"]} | {r["eval_accuracy"]:.3f} | '
                 f'{r["eval_auc"]:.3f} | {r["test_accuracy"]:.3f} | {r["test_auc"]:.3f} | '
                 f'{r["train_s"]:.0f} s |')
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench baselines', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--clips-dir', required=True, help='an ingest output (train/eval/test)')
  parser.add_argument('--models', default=','.join(MODELS),
                      help=f'comma-separated, of {", ".join(CHOICES)}')
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--steps', type=int, default=300,
                      help='training steps of the clip models (batch 16)')
  parser.add_argument('--num-views', type=int, default=4, help='K views averaged per video')
  parser.add_argument('--vivit-overrides', default='{}',
                      help='JSON object of ViViTConfig fields for vivit and hybrid, e.g. '
                      '\'{"conv_norm": "group"}\'')
  args = parser.parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  unknown = sorted(set(models) - set(CHOICES))
  if unknown:
    parser.error(f'unknown model(s) {", ".join(unknown)}; choose from {", ".join(CHOICES)}')
  try:
    rows = run(args.clips_dir, models, [int(s) for s in args.seeds.split(',')], args.steps,
               args.num_views, vivit_overrides=json.loads(args.vivit_overrides))
  except (FileNotFoundError, ValueError) as e:
    print(f'vivit-tfx bench baselines: error: {e}', file=sys.stderr)
    return 1
  print(table(rows))
  return 0
