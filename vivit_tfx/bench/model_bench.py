"""Model benchmark: parameters, FLOPs per clip and CPU forward latency per preset and variant,
next to the ViViT paper's Table 2 (ViViT-B/16x2, 32 frames, 224 px).

FLOPs are counted analytically as multiply-adds, the convention of the paper's GFLOPs column
(tubelet projection or the conv tokenizer's convolutions, QKV/output projections, attention
scores and weighted sum, MLP).

`--compare-transformers`: CPU seconds per forward pass and per training step (forward,
backward and AdamW update; batch 1, float32, N threads) of the project's ViViT-B/16x2 (32
frames, 224 px) and of transformers' `VivitForVideoClassification` with its default (SDPA)
attention, and their ratios; beside them the project's vivit-hybrid-b at the same clip and
vivit-tiny and vivit-hybrid-tiny at their own (8 frames, 64 px). transformers runs in this
Python when torch and transformers import, else in `--transformers-python` (a separate
environment), else the bench says so. CPU seconds, not wall time: on a shared machine wall
time measures the load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig, preset
from vivit_tfx.models.trainer import distribution, training

# Arnab et al. 2021, Table 2 (ViViT-B, 16x2 tubelets, 32 frames): (GFLOPs, params in M).
PAPER_TABLE2 = {'spatiotemporal': (455.2, 88.9), 'factorised_encoder': (284.4, 115.1),
                'factorised_self_attention': (372.3, 117.3),
                'factorised_dot_product': (277.1, 88.9)}


# The table's presets: linear tubelets and the hybrid, for a CPU and for GPUs.
PRESETS = ('vivit-tiny', 'vivit-hybrid-tiny', 'vivit-b-16x2', 'vivit-hybrid-b')


def _block_macs(n: int, d: int, mlp: int) -> float:
  return 4 * n * d * d + 2 * n * n * d + 2 * n * d * mlp


def tokenizer_macs(c: ViViTConfig) -> int:
  """Multiply-adds of the tokenizer on one clip: the tubelet projection, or the conv
  tokenizer's (1, 3, 3) stem, its 3x3x3 convolutions (each before its max-pool) and the
  projection of each cell to D (vivit.ConvTokenizer)."""
  if c.tokenizer != 'conv':
    return c.num_tokens * int(np.prod(c.tubelet_size)) * c.channels * c.hidden_size
  voxels = np.array((c.num_frames, *c.image_size)) // c.conv_strides[0]
  width = c.conv_widths[0]
  stem_channels = c.channels * (2 if c.conv_input == 'rgb+diff' else 1)
  macs = int(np.prod(voxels)) * 9 * stem_channels * width
  for out, pool in zip(c.conv_widths, c.conv_strides[1:]):
    macs += int(np.prod(voxels)) * 27 * width * out
    voxels, width = voxels // pool, out
  return macs + c.num_tokens * width * c.hidden_size


def analytic_gmacs(c: ViViTConfig) -> float:
  """Multiply-adds of one forward pass on one clip, in G."""
  n_t, n_h, n_w = c.token_grid
  n_s = n_h * n_w
  cls = 1 if c.classifier == 'token' else 0
  d, mlp = c.hidden_size, c.mlp_dim
  macs = tokenizer_macs(c)
  if c.variant == 'spatiotemporal':
    macs += c.num_layers * _block_macs(c.num_tokens + cls, d, mlp)
  elif c.variant == 'factorised_encoder':
    macs += n_t * c.num_layers * _block_macs(n_s + cls, d, mlp)
    macs += c.num_temporal_layers * _block_macs(n_t + cls, d, mlp)
  elif c.variant == 'factorised_dot_product':  # half the heads over space, half over time
    n = c.num_tokens
    macs += c.num_layers * (4 * n * d * d + n * (n_s + n_t) * d + 2 * n * d * mlp)
  else:  # factorised self-attention: spatial MHA per frame + temporal MHA per position + MLP
    spatial = n_t * (4 * n_s * d * d + 2 * n_s * n_s * d)
    temporal = n_s * (4 * n_t * d * d + 2 * n_t * n_t * d)
    macs += c.num_layers * (spatial + temporal + 2 * c.num_tokens * d * mlp)
  return macs / 1e9


def _median_times(fn, repeats: int, prefix: str = '') -> Dict[str, float]:
  """Median CPU and wall seconds of `fn()` (after one warm-up call), keys `[prefix_]cpu_s`,
  `[prefix_]wall_s`."""
  fn()
  cpu, wall = [], []
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
  prefix = f'{prefix}_' if prefix else ''
  return {f'{prefix}cpu_s': float(np.median(cpu)), f'{prefix}wall_s': float(np.median(wall))}


def _clip(config: ViViTConfig) -> tf.Tensor:
  return tf.random.uniform((1, config.num_frames, *config.image_size, config.channels))


def _forward(model: keras.Model, jit_compile: bool = False):
  return tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)


def measure(config: ViViTConfig, repeats: int = 3, latency: bool = True) -> Dict[str, float]:
  """Params, GMACs and the median CPU forward latency (batch 1) of one configuration."""
  model = initialised_vivit(config)
  row = {'params_m': model.count_params() / 1e6, 'gflops': analytic_gmacs(config)}
  if latency:
    clip, forward = _clip(config), _forward(model)
    row['latency_ms'] = 1000 * _median_times(lambda: forward(clip).numpy(), repeats)['wall_s']
  return row


def run(presets: Tuple[str, ...] = PRESETS,
        variants: Tuple[str, ...] = tuple(PAPER_TABLE2), latency: bool = True,
        repeats: int = 3) -> List[Dict]:
  rows = []
  for name in presets:
    for variant in variants:
      # Models 3 and 4 get the gap classifier; latency in float32 whatever the preset's recipe.
      config = preset(name, variant=variant, precision='float32')
      row = {'preset': name, 'variant': variant, **measure(config, repeats, latency)}
      if name == 'vivit-b-16x2':
        row['paper_gflops'], row['paper_params_m'] = PAPER_TABLE2[variant]
      rows.append(row)
  return rows


def format_table(rows: List[Dict]) -> str:
  head = ('| preset | variant | params (M) | paper params (M) | GFLOPs/clip | paper GFLOPs | '
          'CPU latency, batch 1 (ms) |')
  lines = [head, '|' + '---|' * 7]
  for r in rows:
    fmt = lambda k, spec: format(r[k], spec) if k in r else '–'
    lines.append(f"| {r['preset']} | {r['variant']} | {fmt('params_m', '.2f')} | "
                 f"{fmt('paper_params_m', '.1f')} | {fmt('gflops', '.3f')} | "
                 f"{fmt('paper_gflops', '.1f')} | {fmt('latency_ms', '.1f')} |")
  return '\n'.join(lines)


# transformers' side, run as `python -c` (here or in another environment): prints one JSON line.
_TRANSFORMERS_TIMES = r"""
import json, sys, time
import torch, transformers
frames, size, threads, repeats = (int(v) for v in sys.argv[1:5])
torch.set_num_threads(threads)
config = transformers.VivitConfig(num_frames=frames, image_size=size)  # ViViT-B/16x2
model = transformers.VivitForVideoClassification(config)
clip, label = torch.rand(1, frames, 3, size, size), torch.zeros(1, dtype=torch.long)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

def median_times(fn):  # CPU and wall seconds after one warm-up
  fn()
  cpu, wall = [], []
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
  return sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2]

def forward():
  model.eval()
  with torch.inference_mode():
    model(pixel_values=clip)

def train_step():  # as the project's recipe: AdamW, gradients clipped at global norm 1
  model.train()
  opt.zero_grad(set_to_none=True)
  model(pixel_values=clip, labels=label).loss.backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
  opt.step()

row = {'params_m': sum(p.numel() for p in model.parameters()) / 1e6,
       'attention': model.config._attn_implementation,
       'versions': f'torch {torch.__version__}, transformers {transformers.__version__}'}
row['forward_cpu_s'], row['forward_wall_s'] = median_times(forward)
row['train_cpu_s'], row['train_wall_s'] = median_times(train_step)
print(json.dumps(row))
"""


def project_times(config: ViViTConfig, repeats: int, jit_compile: bool = False) -> Dict:
  """Params, GMACs and CPU/wall seconds (batch 1, float32) of one forward pass and of one
  training step: forward, backward and the recipe's AdamW update (`training.compile_model`,
  one update per step)."""
  config = config.replace(precision='float32', jit_compile=jit_compile, accumulation_steps=1)
  model = initialised_vivit(config)
  clip, label = _clip(config), np.zeros((1,), np.float32)
  row = {'params_m': model.count_params() / 1e6, 'gflops': analytic_gmacs(config),
         'clip': f'{config.num_frames} x {config.image_size[0]}'}
  forward = _forward(model, jit_compile)
  row.update(_median_times(lambda: forward(clip).numpy(), repeats, 'forward'))
  training.compile_model(model, config, total_steps=repeats + 1)
  # What model.fit runs per batch (Keras 3.6's train_on_batch retraces on every call).
  step = tf.function(model.train_step, jit_compile=jit_compile)
  row.update(_median_times(lambda: step((clip, label))['loss'].numpy(), repeats, 'train'))
  return row


def transformers_times(frames: int, size: int, threads: int, repeats: int,
                       python: str = '') -> Optional[Dict]:
  """transformers' ViViT-B forward and training step in `python` (default: this one); None
  when torch or transformers is not importable there."""
  python = python or sys.executable
  probe = subprocess.run([python, '-c', 'import torch, transformers'], capture_output=True,
                         check=False)
  if probe.returncode:
    return None
  out = subprocess.run([python, '-c', _TRANSFORMERS_TIMES, str(frames), str(size),
                        str(threads), str(repeats)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


# The rows beside ViViT-B/16x2: (preset, whether at the compared clip rather than its own).
COMPARED_PRESETS = (('vivit-hybrid-b', True), ('vivit-tiny', False),
                    ('vivit-hybrid-tiny', False))
_COLUMNS = ('model', 'implementation', 'clip (frames x px)', 'params (M)', 'GFLOPs/clip',
            'CPU s / forward', 'wall s / forward', 'CPU s / training step',
            'wall s / training step')


def _compare_row(model: str, implementation: str, r: Dict) -> str:
  cells = [model, implementation, r['clip'], f"{r['params_m']:.2f}", f"{r['gflops']:.3f}"]
  cells += [f'{r[k]:.3g}' for k in ('forward_cpu_s', 'forward_wall_s', 'train_cpu_s',
                                    'train_wall_s')]
  return '| ' + ' | '.join(cells) + ' |'


def compare_transformers(frames: int = 32, size: int = 224, threads: int = 2, repeats: int = 2,
                         python: str = '', jit_compile: bool = False) -> str:
  """Markdown table: CPU and wall s per forward and per training step of the project's
  ViViT-B/16x2 and of transformers' at one clip, the hybrids and vivit-tiny beside them, the
  ratios, and the machine's load."""
  load_before = os.getloadavg()[0]
  ours = f"project (Keras 3, TF, XLA {'on' if jit_compile else 'off'})"
  clip = dict(num_frames=frames, image_size=(size, size))
  base = project_times(preset('vivit-b-16x2', **clip), repeats, jit_compile)
  lines = ['| ' + ' | '.join(_COLUMNS) + ' |', '|' + '---|' * len(_COLUMNS),
           _compare_row('vivit-b-16x2', ours, base)]
  theirs = transformers_times(frames, size, threads, repeats, python)
  if theirs:
    lines.append(_compare_row(
        'vivit-b-16x2', f"transformers ({theirs['versions']}, {theirs['attention']} attention)",
        {**theirs, 'clip': base['clip'], 'gflops': base['gflops']}))
  notes = []
  for name, at_clip in COMPARED_PRESETS:
    try:
      config = preset(name, **(clip if at_clip else {}))
    except ValueError as e:  # the compared clip is not a multiple of its footprint
      notes.append(f'{name}: {e}')
      continue
    lines.append(_compare_row(name, ours, project_times(config, repeats, jit_compile)))
  load_after = os.getloadavg()[0]
  head = (f'Batch 1, float32, {threads} threads, median of {repeats} after 1 warm-up; a '
          'training step is forward + backward + AdamW update (gradients clipped at global '
          f'norm 1); load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} '
          'CPUs')
  lines = [head, ''] + lines + notes
  if theirs is None:
    lines.append(f'transformers: torch and transformers are not importable in '
                 f'{python or sys.executable} (pass --transformers-python PY)')
  else:
    ratio = {k: base[f'{k}_cpu_s'] / theirs[f'{k}_cpu_s'] for k in ('forward', 'train')}
    lines += ['', f"CPU-time ratio project / transformers (ViViT-B/16x2): forward "
                  f"{ratio['forward']:.2f}x, training step {ratio['train']:.2f}x"]
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench model', description=__doc__)
  parser.add_argument('--presets', nargs='+', default=list(PRESETS))
  parser.add_argument('--no-latency', action='store_true')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--compare-transformers', action='store_true',
                      help="CPU time per forward and training step of ViViT-B vs transformers' "
                      'ViViT, with the hybrids and vivit-tiny')
  parser.add_argument('--transformers-python', default='',
                      help='a python with torch + transformers (default: this one)')
  for flag, default in (('--frames', 32), ('--size', 224), ('--threads', 2)):  # of the compare
    parser.add_argument(flag, type=int, default=default)
  parser.add_argument('--jit', action='store_true', help='project side under XLA')
  args = parser.parse_args(argv)
  if args.compare_transformers:
    distribution.limit_threads(args.threads)
    print(compare_transformers(args.frames, args.size, args.threads, min(args.repeats, 3),
                               args.transformers_python, args.jit))
    return 0
  print(format_table(run(tuple(args.presets), latency=not args.no_latency,
                         repeats=args.repeats)))
  return 0
