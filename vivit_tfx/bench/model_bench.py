"""Model benchmark: parameters, FLOPs per clip and CPU forward latency per preset and variant,
next to the ViViT paper's Table 2 (ViViT-B/16x2, 32 frames, 224 px).

FLOPs are counted analytically as multiply-adds, the convention of the paper's GFLOPs column
(tubelet projection, QKV/output projections, attention scores and weighted sum, MLP).

`--compare-transformers`: CPU seconds per forward pass (batch 1, float32, N threads) of the
project's ViViT-B/16x2 (32 frames, 224 px) and of transformers' `VivitForVideoClassification`
with its default (SDPA) attention, and their ratio. transformers runs in this Python when torch
and transformers import, else in `--transformers-python` (a separate environment), else the
bench says so. CPU seconds, not wall time: on a shared machine wall time measures the load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from vivit_tfx.models.vivit import build_vivit
from vivit_tfx.models.vivit_config import ViViTConfig, preset

# Arnab et al. 2021, Table 2 (ViViT-B, 16x2 tubelets, 32 frames): (GFLOPs, params in M).
PAPER_TABLE2 = {'spatiotemporal': (455.2, 88.9), 'factorised_encoder': (284.4, 115.1),
                'factorised_self_attention': (372.3, 117.3),
                'factorised_dot_product': (277.1, 88.9)}


def _block_macs(n: int, d: int, mlp: int) -> float:
  return 4 * n * d * d + 2 * n * n * d + 2 * n * d * mlp


def analytic_gmacs(c: ViViTConfig) -> float:
  """Multiply-adds of one forward pass on one clip, in G."""
  n_t, n_h, n_w = c.token_grid
  n_s = n_h * n_w
  t, h, w = c.tubelet_size
  cls = 1 if c.classifier == 'token' else 0
  d, mlp = c.hidden_size, c.mlp_dim
  macs = c.num_tokens * t * h * w * c.channels * d  # tubelet projection
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


def measure(config: ViViTConfig, repeats: int = 3, latency: bool = True) -> Dict[str, float]:
  """Params, GMACs and the median CPU forward latency (batch 1) of one configuration."""
  model = build_vivit(config)
  row = {'params_m': model.count_params() / 1e6, 'gflops': analytic_gmacs(config)}
  if latency:
    clip = tf.random.uniform((1, config.num_frames, *config.image_size, config.channels))
    forward = tf.function(lambda x: model(x, training=False), jit_compile=False)
    forward(clip)  # trace + warm-up
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      forward(clip).numpy()
      times.append(time.perf_counter() - start)
    row['latency_ms'] = 1000 * float(np.median(times))
  return row


def run(presets: Tuple[str, ...] = ('vivit-tiny', 'vivit-b-16x2'),
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
_TRANSFORMERS_FORWARD = r"""
import json, sys, time
import torch, transformers
frames, size, threads, repeats = (int(v) for v in sys.argv[1:5])
torch.set_num_threads(threads)
config = transformers.VivitConfig(num_frames=frames, image_size=size)  # ViViT-B/16x2
model = transformers.VivitForVideoClassification(config).eval()
clip = torch.rand(1, frames, 3, size, size)
cpu, wall = [], []
with torch.inference_mode():
  model(pixel_values=clip)  # warm-up
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    model(pixel_values=clip)
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
print(json.dumps({'cpu_s': sorted(cpu)[len(cpu) // 2], 'wall_s': sorted(wall)[len(wall) // 2],
                  'attention': model.config._attn_implementation,
                  'versions': f'torch {torch.__version__}, transformers {transformers.__version__}'}))
"""


def _median_times(fn, repeats: int) -> Dict[str, float]:
  """Median CPU and wall seconds of `fn()` (after one warm-up call)."""
  fn()
  cpu, wall = [], []
  for _ in range(repeats):
    c, w = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
  return {'cpu_s': float(np.median(cpu)), 'wall_s': float(np.median(wall))}


def project_forward(frames: int, size: int, repeats: int, jit_compile: bool = False
                    ) -> Dict[str, float]:
  """The project's ViViT-B/16x2 (Model 1, float32), CPU/wall seconds per forward."""
  config = preset('vivit-b-16x2', num_frames=frames, image_size=(size, size),
                  precision='float32')
  model = build_vivit(config)
  clip = tf.random.uniform((1, frames, size, size, 3))
  forward = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
  return _median_times(lambda: forward(clip).numpy(), repeats)


def transformers_forward(frames: int, size: int, threads: int, repeats: int,
                         python: str = '') -> Optional[Dict[str, float]]:
  """transformers' ViViT-B forward in `python` (default: this one); None when torch or
  transformers is not importable there."""
  python = python or sys.executable
  probe = subprocess.run([python, '-c', 'import torch, transformers'], capture_output=True,
                         check=False)
  if probe.returncode:
    return None
  out = subprocess.run([python, '-c', _TRANSFORMERS_FORWARD, str(frames), str(size),
                        str(threads), str(repeats)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def compare_transformers(frames: int = 32, size: int = 224, threads: int = 2, repeats: int = 2,
                         python: str = '', jit_compile: bool = False) -> str:
  """Markdown table: CPU s per forward of both, the ratio, and the machine's load."""
  load_before = os.getloadavg()[0]
  ours = project_forward(frames, size, repeats, jit_compile)
  theirs = transformers_forward(frames, size, threads, repeats, python)
  load_after = os.getloadavg()[0]
  head = (f'ViViT-B/16x2, {frames} frames x {size} px, batch 1, float32, {threads} threads, '
          f'median of {repeats} forwards after 1 warm-up; load average {load_before:.1f} -> '
          f'{load_after:.1f} on {os.cpu_count()} CPUs')
  lines = [head, '', '| implementation | CPU s / forward | wall s / forward |', '|---|---|---|',
           f"| project (Keras 3, TF, XLA {'on' if jit_compile else 'off'}) | "
           f"{ours['cpu_s']:.2f} | {ours['wall_s']:.2f} |"]
  if theirs is None:
    lines.append(f'transformers: torch and transformers are not importable in '
                 f'{python or sys.executable} (pass --transformers-python PY)')
    return '\n'.join(lines)
  lines.append(f"| transformers ({theirs['versions']}, {theirs['attention']} attention) | "
               f"{theirs['cpu_s']:.2f} | {theirs['wall_s']:.2f} |")
  lines += ['', f"CPU-time ratio project / transformers: {ours['cpu_s'] / theirs['cpu_s']:.2f}x"]
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--presets', nargs='+', default=['vivit-tiny', 'vivit-b-16x2'])
  parser.add_argument('--no-latency', action='store_true')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--compare-transformers', action='store_true',
                      help="CPU time per forward of ViViT-B vs transformers' ViViT")
  parser.add_argument('--transformers-python', default='',
                      help='a python with torch + transformers (default: this one)')
  for flag, default in (('--frames', 32), ('--size', 224), ('--threads', 2)):  # of the compare
    parser.add_argument(flag, type=int, default=default)
  parser.add_argument('--jit', action='store_true', help='project side under XLA')
  args = parser.parse_args(argv)
  if args.compare_transformers:
    try:
      tf.config.threading.set_intra_op_parallelism_threads(args.threads)
      tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TF already initialised in this process
      pass
    print(compare_transformers(args.frames, args.size, args.threads, min(args.repeats, 3),
                               args.transformers_python, args.jit))
    return 0
  print(format_table(run(tuple(args.presets), latency=not args.no_latency,
                         repeats=args.repeats)))
  return 0
