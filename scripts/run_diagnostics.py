"""What a finished `vivit-tfx run` with --pretrain and/or --unlabeled-videos did, per output root:
when the masked pre-training's loss left its plateau (the mean prediction: about 1.0 with
normalised pixels), its final loss, and how many of the pseudo-labels carry the class of the
unlabelled video's folder (synthetic footage is written into class folders that self-training
never reads). Used for the README's hard-benchmark tables:

  python scripts/run_diagnostics.py B/seed112/hybrid+pretrain+unlabeled B/seed112/hybrid+pretrain-long
"""
from __future__ import annotations

import argparse
import json
from typing import List, Optional, Sequence

import tensorflow as tf

PLATEAU = 0.97  # a window's mean loss below this has left the plateau
WINDOW = 50     # steps


def plateau_exit(losses: Sequence[float], window: int = WINDOW,
                 below: float = PLATEAU) -> Optional[int]:
  """The first step (1-based, a window's last) whose `window`-step mean loss is below `below`,
  or None if none is."""
  for end in range(window, len(losses) + 1):
    if sum(losses[end - window:end]) / window < below:
      return end
  return None


def _latest(pattern: str) -> Optional[str]:
  found = sorted(tf.io.gfile.glob(pattern))
  return found[-1] if found else None


def describe(root: str) -> str:
  """One line for an output root."""
  parts = [root]
  history = _latest(f'{root}/pipeline_root/PretrainTrainer/model/*/Format-Serving/history.json')
  if history:
    with tf.io.gfile.GFile(history) as f:
      losses: List[float] = json.load(f)['loss']
    tail = losses[-80:]
    exit_step = plateau_exit(losses)
    left = f'left the plateau at step {exit_step}' if exit_step else 'never left the plateau'
    parts.append(f'pre-training {len(losses)} steps, {left}, last {len(tail)} steps '
                 f'{sum(tail) / len(tail):.3f}')
  pseudo = _latest(f'{root}/pipeline_root/Trainer/model_run/*/pseudo_labels.json')
  if pseudo:
    with tf.io.gfile.GFile(pseudo) as f:
      summary = json.load(f)
    right = sum(v['source_path'].split('/')[0] == v['label'] for v in summary['videos'])
    parts.append(f'pseudo-labelled {summary["chosen"]} of {summary["scored"]}, '
                 f'{right} with their folder\'s class')
  if len(parts) == 1:
    parts.append('no pre-training history or pseudo-labels found')
  return f'{parts[0]}: ' + ' | '.join(parts[1:])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('roots', nargs='+', help="`vivit-tfx run`'s --output-root folders")
  for root in parser.parse_args(argv).roots:
    print(describe(root.rstrip('/')))


if __name__ == '__main__':
  main()
