"""The weights a ViViT config names, loaded into the built network: the step after
`network.vivit.build_vivit`.

  init_checkpoint      a Hugging Face model directory (`hf_checkpoint`; its head kept when its
                       labels are the run's classes) or an image ViT .npz (`vit_checkpoint`,
                       inflated to tubelets);
  kernel_init          else, the tubelet kernel alone from `kernel_init_checkpoint`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from vivit_tfx.models.checkpoints import hf_checkpoint, pixel_preprocessing, vit_checkpoint
from vivit_tfx.models.checkpoints.vit_checkpoint import inflate_2d_kernel
from vivit_tfx.models.network.vivit import ViViT, build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig


def initialised_vivit(config: ViViTConfig, name: str = 'vivit',
                      classes: Optional[Sequence[str]] = None) -> ViViT:
  """The network with the weights its config names; `model.init_source` records what was
  loaded (lineage; {} for none)."""
  model = build_vivit(config, name)
  model.init_source = initialise(model, classes)
  return model


def initialise(model: ViViT, classes: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """Loads the weights `model.config` names into `model`; what was loaded."""
  config = model.config
  if pixel_preprocessing.is_hf_directory(config.init_checkpoint):
    return hf_checkpoint.init_from_hf(model, config.init_checkpoint, classes)
  if config.init_checkpoint:
    return vit_checkpoint.initialise(model)
  if config.kernel_init != 'random':
    load_tubelet_kernel(model, config.kernel_init_checkpoint, config.kernel_init)
  return {}


def load_tubelet_kernel(model: ViViT, checkpoint: str, method: str) -> None:
  """Initialises the tubelet kernel from an .npz ('kernel' [h, w, C, D], opt. 'bias') read
  through tf.io.gfile."""
  if not checkpoint:
    raise ValueError(f"kernel_init={method!r} needs kernel_init_checkpoint (an .npz with "
                     "'kernel' [h, w, C, D]) or init_checkpoint (a ViT .npz); nothing is "
                     'downloaded')
  data = vit_checkpoint.read_npz(checkpoint)
  kernel = inflate_2d_kernel(data['kernel'], model.config.tubelet_size[0], method)
  bias: Optional[np.ndarray] = data.get('bias')
  conv = model.tokenizer.projection
  if tuple(conv.kernel.shape) != kernel.shape:
    raise ValueError(f'{checkpoint}: inflated kernel {kernel.shape} does not match the '
                     f'tubelet kernel {tuple(conv.kernel.shape)}')
  conv.kernel.assign(kernel)
  if bias is not None:
    conv.bias.assign(bias)
