"""Model benchmark: parameters, FLOPs per clip and CPU forward latency per preset and variant,
next to the ViViT paper's Table 2 (ViViT-B/16x2, 32 frames, 224 px).

FLOPs are counted analytically as multiply-adds, the convention of the paper's GFLOPs column
(tubelet projection, QKV/output projections, attention scores and weighted sum, MLP).
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np

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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.vivit import build_vivit  # pylint: disable=g-import-not-at-top
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


def main(argv: Optional[List[str]] = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--presets', nargs='+', default=['vivit-tiny', 'vivit-b-16x2'])
  parser.add_argument('--no-latency', action='store_true')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)
  print(format_table(run(tuple(args.presets), latency=not args.no_latency,
                         repeats=args.repeats)))
  return 0
