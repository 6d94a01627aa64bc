"""Probe (issue 28): does FixMatch-style consistency on unlabelled footage help the default hybrid
where pseudo-labels fixed once did not? Not part of the product: a decision aid, its table in
the README.

Trains `vivit-hybrid-tiny` (its recipe's optimizer and schedule) by one loop, twice from the same
start: on the labelled train split alone, and with FixMatch's unlabelled term (Sohn et al.
2020): at every step a weakly augmented view of each unlabelled clip (the Trainer's own
augmentation) gives a pseudo-label where the model is confident (≥ tau), and the model is
trained to give that label to a strongly augmented view of the same clip (a harder crop, the
photometric noise of `augment.photometric_noise`), weighted by `lam`. Scores eval and test at
video level (K views averaged), as `bench baselines` does.

  .venv/bin/python scripts/fixmatch_probe.py --clips-dir D/clips --unlabeled-clips-dir D/uclips \
      --steps 1600
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from vivit_tfx.bench import baselines_bench as bb  # pylint: disable=g-import-not-at-top,wrong-import-position
from vivit_tfx.models.trainer import augment  # pylint: disable=g-import-not-at-top,wrong-import-position


def strong(clips: tf.Tensor) -> tf.Tensor:
  """FixMatch's strong view: a crop down to half the side, a flip, photometric noise 0.5."""
  return augment.photometric_noise(
      augment.random_flip(augment.random_resized_crop(clips, min_scale=0.5)), 0.5)


def train(labelled: bb.Videos, unlabeled: bb.Videos, steps: int, seed: int, num_frames: int,
          use_unlabeled: bool, tau: float, lam: float, mu: int, batch: int = 16):
  """The trained model and its normaliser (mean, std); prints the unlabelled mask's rate."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  mean, std = bb.channel_statistics(labelled)
  shape = (num_frames,) + labelled.frames[0].shape[1:]
  model = bb.vivit_builder('vivit-hybrid-tiny')(shape, steps)
  model.optimizer.build(model.trainable_variables)  # its slots outside the tf.function
  rng = np.random.default_rng(seed)
  norm = lambda x: (tf.cast(x, tf.float32) / 255.0 - mean) / std
  loss_fn = tf.nn.sigmoid_cross_entropy_with_logits

  @tf.function
  def step(xl, yl, xu):
    xl = augment.augment(norm(xl))
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(loss_fn(labels=yl, logits=model(xl, training=True)))
      rate = tf.constant(0.0)
      if use_unlabeled:
        u = norm(xu)
        p = tf.stop_gradient(tf.sigmoid(model(augment.augment(u), training=False)))  # [U, 1]
        mask = tf.cast(tf.maximum(p, 1 - p) >= tau, tf.float32)
        pseudo = tf.cast(p >= 0.5, tf.float32)
        per_clip = loss_fn(labels=pseudo, logits=model(strong(u), training=True))
        loss += lam * tf.reduce_mean(mask * per_clip)
        rate = tf.reduce_mean(mask)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss, rate

  rates, start = [], time.time()
  for i in range(steps):
    index = rng.choice(len(labelled.labels), batch, replace=False)
    xl = bb.random_clips(labelled, index, num_frames, rng)
    yl = labelled.labels[index, None].astype(np.float32)
    uindex = rng.choice(len(unlabeled.labels), batch * mu, replace=False)
    xu = bb.random_clips(unlabeled, uindex, num_frames, rng) if use_unlabeled else xl
    loss, rate = step(xl, yl, xu)
    rates.append(float(rate))
    if (i + 1) % 200 == 0:
      print(f'  step {i + 1}: loss {float(loss):.3f}, unlabelled clips kept (mean of the last '
            f'200 steps) {np.mean(rates[-200:]):.2f}, {time.time() - start:.0f} s', flush=True)
  return model, mean, std


def video_scores(model, mean, std, videos: bb.Videos, num_frames: int, num_views: int = 4):
  views = bb.view_clips(videos, num_frames, num_views)  # [V, K, T, H, W, 3]
  flat = (views.reshape((-1,) + views.shape[2:]).astype(np.float32) / 255.0 - mean) / std
  logits = model.predict(flat, batch_size=32, verbose=0)[:, 0]
  probs = (1 / (1 + np.exp(-logits))).reshape(len(videos.labels), -1).mean(1)
  return bb.scores(videos.labels, probs)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--clips-dir', required=True)
  parser.add_argument('--unlabeled-clips-dir', required=True,
                      help='an ingest output; every split is used, labels ignored')
  parser.add_argument('--steps', type=int, default=1600)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--tau', type=float, default=0.95)
  parser.add_argument('--lam', type=float, default=1.0)
  parser.add_argument('--mu', type=int, default=2, help='unlabelled clips per labelled clip')
  parser.add_argument('--batch', type=int, default=16, help='labelled clips per step')
  parser.add_argument('--arms', default='labels,fixmatch')
  args = parser.parse_args()
  num_frames = bb.clip_length(args.clips_dir)
  labelled = bb.load_split(args.clips_dir, 'train')
  splits = {s: bb.load_split(args.clips_dir, s) for s in bb.SPLITS}
  parts = [bb.load_split(args.unlabeled_clips_dir, s) for s in ('train',) + bb.SPLITS
           if os.path.isdir(os.path.join(args.unlabeled_clips_dir, s))]
  unlabeled = bb.Videos([f for p in parts for f in p.frames],
                        np.concatenate([p.labels for p in parts]))
  print(f'{len(labelled.labels)} labelled, {len(unlabeled.labels)} unlabelled videos; T = '
        f'{num_frames}; {args.steps} steps', flush=True)
  for arm in args.arms.split(','):
    start = time.time()
    model, mean, std = train(labelled, unlabeled, args.steps, args.seed, num_frames,
                             arm == 'fixmatch', args.tau, args.lam, args.mu, args.batch)
    row = {'arm': arm, 'seed': args.seed, 'steps': args.steps, 'tau': args.tau,
           'lam': args.lam, 'mu': args.mu, 'train_s': round(time.time() - start)}
    row.update({s: video_scores(model, mean, std, v, num_frames) for s, v in splits.items()})
    print(json.dumps(row), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
