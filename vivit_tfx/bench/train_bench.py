"""Training benchmark: clips/s, step time, peak memory and model FLOPs utilisation (MFU) of the
Trainer's training step for a preset, with the input pipeline's clips/s beside it.

* Training: `model.fit` on one resident synthetic batch (the input pipeline is out of the
  way), the recipe's optimizer, precision and XLA; the first steps (tracing, compilation)
  are not timed. MFU = 3 x 2 x analytic multiply-adds per clip (forward + backward ≈ 3
  forwards, bench/model_bench.py) x clips/s ÷ the device's peak FLOP/s.
* Input pipeline: synthetic JPEG clip records → decode + resize + normalise (the Transform
  graph's ops) + training augmentation, batched, on the CPU, in clips/s; "headroom" is its
  rate ÷ the training step's demand (≥ 1.5 keeps the accelerator fed).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from vivit_tfx.bench.model_bench import analytic_gmacs
from vivit_tfx.data import features
from vivit_tfx.models.network.vivit import build_vivit
from vivit_tfx.models.network.vivit_config import preset
from vivit_tfx.models.trainer import augment, distribution, export, preprocessing, training
from vivit_tfx.models.videomae import videomae_pretrain
from vivit_tfx.models.videomae.videomae_pretrain import PretrainConfig
from vivit_tfx.pipeline.configs import CONV_MASK_RATIO, parse_size

# Dense peak TFLOP/s by device name and compute precision (vendor datasheets; tensor cores
# for bfloat16/float16, TF32 tensor cores for float32 matmuls).
PEAK_TFLOPS = {
    'H200': {'bfloat16': 989.0, 'float16': 989.0, 'float32': 494.0},
    'H100': {'bfloat16': 989.0, 'float16': 989.0, 'float32': 494.0},
    'A100': {'bfloat16': 312.0, 'float16': 312.0, 'float32': 156.0},
    'L4': {'bfloat16': 121.0, 'float16': 121.0, 'float32': 60.0},
    'T4': {'bfloat16': 65.0, 'float16': 65.0, 'float32': 8.1},
    'V100': {'bfloat16': 125.0, 'float16': 125.0, 'float32': 15.7},
}


def device_peak_tflops(precision: str) -> Optional[float]:
  """The first GPU's dense peak for the compute dtype, or None (CPU, unknown GPU)."""
  gpus = tf.config.list_physical_devices('GPU')
  if not gpus:
    return None
  name = tf.config.experimental.get_device_details(gpus[0]).get('device_name', '')
  dtype = precision.split('_')[-1]
  for key, peaks in PEAK_TFLOPS.items():
    if key in name:
      return peaks[dtype]
  return None


def device_name() -> str:
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    return tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')
  return f'CPU ({os.cpu_count()} cores)'


def peak_memory_gib() -> float:
  """Peak device memory of GPU:0, else the process's peak RSS."""
  if tf.config.list_physical_devices('GPU'):
    return tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**30
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB


class StepTimer(keras.callbacks.Callback):
  """Wall time of every training batch."""

  def __init__(self):
    super().__init__()
    self.times: List[float] = []

  def on_train_batch_begin(self, batch, logs=None):
    self.start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter() - self.start)


def pretrain_config(config, mask_ratio: float):
  """VideoMAE-B's decoder proportions: width D/2 (384), half the heads, MLP 2D, 4 blocks."""
  return PretrainConfig(mask_ratio=mask_ratio, decoder_hidden_size=config.hidden_size // 2,
                        decoder_num_heads=max(1, config.num_heads // 2),
                        decoder_mlp_dim=2 * config.hidden_size, decoder_num_layers=4)


def train_throughput(config, steps: int, warmup: int, objective: str = 'finetune',
                     mask_ratio: float = 0.9) -> Dict[str, float]:
  """Step time and clips/s of the Trainer's training step on one resident batch (global
  batch = batch_size x accumulation_steps x replicas, one update per step), after `warmup`
  untimed steps, under the strategy the Trainer's 'auto' picks on this machine. objective
  'pretrain': VideoMAE's step (encoder on the visible tubelets, decoder, masked-pixel loss)
  instead of the classifier's."""
  strategy = distribution.strategy_for('auto')
  if tf.config.list_physical_devices('GPU'):
    tf.config.experimental.reset_memory_stats('GPU:0')
  batch = config.batch_size * config.accumulation_steps * strategy.num_replicas_in_sync
  clips = tf.random.normal((batch, config.num_frames, *config.image_size, config.channels))
  labels = tf.cast(tf.random.uniform((batch, 1)) < 0.5, tf.float32)
  with strategy.scope():
    if objective == 'pretrain':
      model = videomae_pretrain.VideoMAEPretrainer(build_vivit(config),
                                                   pretrain_config(config, mask_ratio))
      model.build()
      model.compile(optimizer=training.optimizer(config, model, 10 * (steps + warmup)),
                    jit_compile=bool(config.jit_compile))
    else:
      model = build_vivit(config)
      training.compile_model(model, config, total_steps=10 * (steps + warmup))
  data = tf.data.Dataset.from_tensors((clips, labels)).repeat()
  timer = StepTimer()
  model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer])
  step_s = float(np.median(timer.times[warmup:]))
  return {'batch': batch, 'strategy': f'{type(strategy).__name__.strip("_")} x'
                                      f'{strategy.num_replicas_in_sync}',
          'accumulation': config.accumulation_steps, 'step_s': step_s,
          'clips_per_s': batch / step_s,
          'first_step_s': timer.times[0], 'peak_gib': peak_memory_gib()}


def input_throughput(config, batches: int = 4) -> float:
  """Clips/s of decode + resize + normalise + augment on synthetic JPEG clip records."""
  records = export.synthetic_examples(config.num_frames, config.image_size,
                                      count=config.batch_size)
  spec = {features.FRAMES: tf.io.FixedLenFeature([config.num_frames], tf.string)}

  def transform(serialized):  # [B] → [B, T, H, W, 3]
    frames = tf.io.parse_example(serialized, spec)[features.FRAMES]
    clips = preprocessing.decode_clips(frames, config.image_size)
    return augment.augment((clips - 0.45) / 0.25)

  data = tf.data.Dataset.from_tensor_slices(records).repeat().batch(config.batch_size).map(
      transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
  iterator = iter(data)
  next(iterator)  # tracing
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * config.batch_size / (time.perf_counter() - start)


def run(preset_name: str, variant: str, frames: Optional[int], image_size, batch_size: int,
        precision: str, jit_compile: bool, steps: int, warmup: int,
        peak_tflops: Optional[float], overrides: Optional[Dict] = None,
        objective: str = 'finetune', mask_ratio: Optional[float] = None) -> Dict:
  changes = {**(overrides or {}), 'variant': variant, 'precision': precision,
             'jit_compile': jit_compile, 'batch_size': batch_size}  # the preset's accumulation
  if frames:
    changes['num_frames'] = frames
  if image_size:
    changes['image_size'] = image_size
  if objective == 'pretrain':
    changes['classifier'] = 'gap'  # VideoMAE's encoder has no CLS token
  config = preset(preset_name, **changes)
  if mask_ratio is None:  # the pipeline's: lower through a conv stem (masked convolutions)
    mask_ratio = CONV_MASK_RATIO if config.tokenizer == 'conv' else PretrainConfig.mask_ratio
  row = {'preset': preset_name, 'variant': variant, 'objective': objective,
         'frames': config.num_frames, 'image': config.image_size[0], 'precision': precision,
         'xla': jit_compile, 'device': device_name(),
         'mask_ratio': mask_ratio if objective == 'pretrain' else None,
         **train_throughput(config, steps, warmup, objective, mask_ratio)}
  # FLOPs are counted for the classifier's step only (the analytic count has no decoder).
  row['train_tflops'] = (6 * analytic_gmacs(config) * row['clips_per_s'] / 1e3
                         if objective == 'finetune' else None)
  peak = peak_tflops or device_peak_tflops(precision)
  row['mfu'] = row['train_tflops'] / peak if peak and row['train_tflops'] else None
  row['input_clips_per_s'] = input_throughput(config)
  row['headroom'] = row['input_clips_per_s'] / row['clips_per_s']
  return row


def format_table(rows: List[Dict]) -> str:
  lines = ['| preset | variant | step | T x px | precision | XLA | strategy | '
           'batch (accumulation) | step (s) | train clips/s | achieved TFLOP/s | MFU | '
           'peak memory (GiB) | input clips/s | input headroom | device |', '|' + '---|' * 16]
  for r in rows:
    step = r.get('objective', 'finetune') + (f" (mask {r['mask_ratio']:g})"
                                             if r.get('mask_ratio') else '')
    mfu = f"{100 * r['mfu']:.1f} %" if r['mfu'] is not None else '–'
    tflops = f"{r['train_tflops']:.3f}" if r['train_tflops'] is not None else '–'
    lines.append(
        f"| {r['preset']} | {r['variant']} | {step} | "
        f"{r['frames']}x{r['image']} | {r['precision']} | "
        f"{'on' if r['xla'] else 'off'} | {r['strategy']} | {r['batch']} "
        f"({r['accumulation']}) | {r['step_s']:.3f} | "
        f"{r['clips_per_s']:.2f} | {tflops} | {mfu} | {r['peak_gib']:.2f} | "
        f"{r['input_clips_per_s']:.1f} | {r['headroom']:.1f}x | {r['device']} |")
  return '\n'.join(lines)


def _bool(text: str) -> bool:
  return text.lower() in ('1', 'true', 'on', 'yes')


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench train', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--preset', default='vivit-b-16x2')
  parser.add_argument('--variant', default='spatiotemporal')
  parser.add_argument('--frames', type=int, nargs='+', default=[0],
                      help='clip lengths to run (0: the preset\'s)')
  parser.add_argument('--image-size', type=parse_size, default=None)
  parser.add_argument('--batch-size', type=int, default=8, help='per replica')
  parser.add_argument('--precision', nargs='+', default=['mixed_bfloat16'],
                      choices=['float32', 'mixed_bfloat16', 'mixed_float16'])
  parser.add_argument('--jit-compile', type=_bool, nargs='+', default=[True],
                      help='XLA on/off, e.g. --jit-compile false true')
  parser.add_argument('--steps', type=int, default=10, help='timed steps')
  parser.add_argument('--warmup', type=int, default=2, help='untimed first steps')
  parser.add_argument('--vivit-overrides', type=json.loads, default={},
                      help='JSON of ViViTConfig fields over the preset, e.g. '
                           '\'{"num_layers": 2, "accumulation_steps": 1}\'')
  parser.add_argument('--peak-tflops', type=float, default=None,
                      help='device peak for MFU (default: known GPUs; none on CPU)')
  parser.add_argument('--objective', nargs='+', default=['finetune'],
                      choices=['finetune', 'pretrain'],
                      help="'pretrain': VideoMAE's masked-autoencoder step (decoder with "
                      "VideoMAE-B's proportions), e.g. --objective finetune pretrain")
  parser.add_argument('--mask-ratio', type=float, default=None,
                      help="pre-training's hidden share (default: the pipeline's, 0.75 "
                      'through a conv tokenizer, else 0.9)')
  args = parser.parse_args(argv)
  rows = []
  for frames in args.frames:
    for precision in args.precision:
      for jit in args.jit_compile:
        for objective in args.objective:
          rows.append(run(args.preset, args.variant, frames, args.image_size, args.batch_size,
                          precision, jit, args.steps, args.warmup, args.peak_tflops,
                          args.vivit_overrides, objective, args.mask_ratio))
          print(format_table(rows[-1:]).splitlines()[-1], flush=True)
  print(format_table(rows))
  return 0
