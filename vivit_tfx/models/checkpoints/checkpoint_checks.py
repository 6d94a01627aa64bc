"""Every checkpoint a run will load, loaded before any work (`vivit-tfx run`, before ingest):
weights' header, names, shapes and dtypes against config.json and the run's clip.

The loaders are the Trainers' own (`build_vivit` for --init-checkpoint, `load_checkpoint` for
a pre-training checkpoint), and `checkpoint inspect` reads a directory through the same
`hf_checkpoint.load`: a checkpoint one refuses, the other refuses with the same line.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.checkpoints.vit_checkpoint import CheckpointMismatch
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.videomae import videomae_pretrain


def check(vivit: ViViTConfig, classes: Optional[Sequence[str]] = None,
          pretrain: Optional[videomae_pretrain.PretrainConfig] = None) -> None:
  """Loads `vivit.init_checkpoint` into the run's model, and `pretrain.checkpoint` into its
  pre-training model, as the Trainers will; raises CheckpointMismatch (one line naming the
  checkpoint) if either cannot be loaded."""
  for path, load in ((vivit.init_checkpoint, lambda: initialised_vivit(vivit, classes=classes)),
                     (pretrain.checkpoint if pretrain else '', lambda: _load_pretraining(
                         vivit, pretrain))):
    if not path:
      continue
    try:
      load()
    except CheckpointMismatch:
      raise
    except (ValueError, KeyError, OSError, tf.errors.OpError) as e:
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise CheckpointMismatch(message if path in message else f'{path}: {message}') from None


def _load_pretraining(vivit: ViViTConfig, pretrain: videomae_pretrain.PretrainConfig) -> None:
  model = videomae_pretrain.build_pretrainer(vivit, pretrain)  # as PretrainTrainer builds it
  videomae_pretrain.load_checkpoint(model, pretrain.checkpoint)
