"""ViViT configuration and the paper's presets; serialises to/from JSON (Trainer hyperparameters).

Preset names follow the paper: `vivit-<backbone>-<patch>x<t>`, e.g. `vivit-b-16x2` is a ViT-B
backbone with 16x16 pixel x 2 frame tubelets (Arnab et al. 2021, Table 2 uses 32 frames, 224 px).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Tuple

VARIANTS = ('spatiotemporal', 'factorised_encoder', 'factorised_self_attention')
TOKENIZERS = ('tubelet', 'uniform_frame')
CLASSIFIERS = ('token', 'gap')
POSITIONAL = ('learned', 'factorised')
KERNEL_INITS = ('random', 'central_frame', 'filter_inflation')


@dataclasses.dataclass
class ViViTConfig:
  """Architecture plus training recipe, in one JSON-serialisable object."""
  # Input clip: [T, H, W, C].
  num_frames: int = 8
  image_size: Tuple[int, int] = (64, 64)
  channels: int = 3
  # Architecture.
  variant: str = 'spatiotemporal'      # Model 1 / 2 / 3 of the paper
  tokenizer: str = 'tubelet'           # or 'uniform_frame' (2D patches of every frame)
  tubelet_size: Tuple[int, int, int] = (2, 16, 16)  # (t, h, w), time first
  hidden_size: int = 64
  num_layers: int = 4                  # spatial / joint layers
  num_temporal_layers: int = 2         # Model 2 only
  num_heads: int = 4
  mlp_dim: int = 128
  dropout: float = 0.0
  attention_dropout: float = 0.0
  stochastic_depth: float = 0.0        # drop rate of the last block (linear in depth)
  classifier: str = 'gap'              # 'token' (CLS) or 'gap'
  positional: str = 'learned'          # 'learned' over all tokens or 'factorised' space + time
  n_classes: int = 2
  kernel_init: str = 'random'          # 3D tubelet kernel from a 2D patch kernel (paper §3.4)
  kernel_init_checkpoint: str = ''     # local .npz with 'kernel' [h, w, C, D] (and 'bias')
  # Training recipe.
  learning_rate: float = 1e-3
  weight_decay: float = 0.05
  warmup_steps: int = 100
  label_smoothing: float = 0.0
  batch_size: int = 16

  def __post_init__(self):
    self.image_size = tuple(self.image_size)
    self.tubelet_size = tuple(self.tubelet_size)
    if self.tokenizer == 'uniform_frame':
      self.tubelet_size = (1,) + self.tubelet_size[1:]
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the offending field."""
    for field, allowed in (('variant', VARIANTS), ('tokenizer', TOKENIZERS),
                           ('classifier', CLASSIFIERS), ('positional', POSITIONAL),
                           ('kernel_init', KERNEL_INITS)):
      if getattr(self, field) not in allowed:
        raise ValueError(f'{field}={getattr(self, field)!r} is not one of {allowed}')
    t, h, w = self.tubelet_size
    for name, size, patch in (('num_frames', self.num_frames, t),
                              ('image height', self.image_size[0], h),
                              ('image width', self.image_size[1], w)):
      if patch <= 0 or size % patch:
        raise ValueError(f'{name} {size} is not a multiple of the tubelet size {patch} '
                         f'(tubelet_size=(t, h, w)={self.tubelet_size})')
    if self.hidden_size % self.num_heads:
      raise ValueError(f'hidden_size {self.hidden_size} is not divisible by num_heads '
                       f'{self.num_heads}')
    if self.variant == 'factorised_self_attention' and self.classifier == 'token':
      raise ValueError('factorised_self_attention (Model 3) has no CLS token: use '
                       "classifier='gap'")
    if self.n_classes < 2:
      raise ValueError(f'n_classes must be at least 2, got {self.n_classes}')

  @property
  def token_grid(self) -> Tuple[int, int, int]:
    """(n_t, n_h, n_w): tokens along time, height and width."""
    t, h, w = self.tubelet_size
    return self.num_frames // t, self.image_size[0] // h, self.image_size[1] // w

  @property
  def num_tokens(self) -> int:
    n_t, n_h, n_w = self.token_grid
    return n_t * n_h * n_w

  @property
  def num_outputs(self) -> int:
    """One logit for binary, else one per class."""
    return 1 if self.n_classes == 2 else self.n_classes

  def replace(self, **changes) -> 'ViViTConfig':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'ViViTConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f'unknown ViViT config keys: {sorted(unknown)}')
    return cls(**d)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'ViViTConfig':
    return cls.from_dict(json.loads(text))


# Backbones of ViT (Dosovitskiy et al.) as used by ViViT: (hidden, layers, heads, mlp).
BACKBONES = {
    'ti': (192, 12, 3, 768),
    's': (384, 12, 6, 1536),
    'b': (768, 12, 12, 3072),
    'l': (1024, 24, 16, 4096),
    'h': (1280, 32, 16, 5120),
}


def preset(name: str, **overrides) -> ViViTConfig:
  """`vivit-tiny` (2-core CPU, the default pipeline's) or `vivit-<ti|s|b|l|h>-<p>x<t>`."""
  if name == 'vivit-tiny':
    return ViViTConfig(**overrides)
  try:
    _, backbone, patch = name.split('-')
    p, t = (int(v) for v in patch.split('x'))
    hidden, layers, heads, mlp = BACKBONES[backbone]
  except (ValueError, KeyError):
    raise ValueError(f'unknown preset {name!r}; use vivit-tiny or vivit-<'
                     f'{"|".join(BACKBONES)}>-<patch>x<frames>, e.g. vivit-b-16x2') from None
  base = dict(num_frames=32, image_size=(224, 224), tubelet_size=(t, p, p), hidden_size=hidden,
              num_layers=layers, num_heads=heads, mlp_dim=mlp, num_temporal_layers=4,
              classifier='token', stochastic_depth=0.1, batch_size=64)
  base.update(overrides)
  return ViViTConfig(**base)


PRESETS = ('vivit-tiny',) + tuple(f'vivit-{b}-16x2' for b in BACKBONES)
