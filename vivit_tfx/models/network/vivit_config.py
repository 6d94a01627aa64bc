"""ViViT configuration and the paper's presets; serialises to/from JSON (Trainer hyperparameters).

Preset names follow the paper: `vivit-<backbone>-<patch>x<t>`, e.g. `vivit-b-16x2` is a ViT-B
backbone with 16x16 pixel x 2 frame tubelets (Arnab et al. 2021, Table 2 uses 32 frames, 224 px).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Tuple

from vivit_tfx.models.checkpoints import hub_presets

VARIANTS = ('spatiotemporal', 'factorised_encoder', 'factorised_self_attention',
            'factorised_dot_product')
TOKENIZERS = ('tubelet', 'uniform_frame', 'conv')
CONV_NORMS = ('batch', 'group')
CONV_INPUTS = ('rgb', 'rgb+diff')
# Fields added since models were first saved: the behaviour of a saved config without them.
SAVED_BEFORE = {'conv_input': 'rgb', 'conv_head': False}
CLASSIFIERS = ('token', 'gap', 'gap_fc_norm')
POSITIONAL = ('learned', 'factorised', 'sinusoidal', 'per_frame')
ACTIVATIONS = ('gelu', 'gelu_tanh')
QKV_BIASES = ('qkv', 'qv', 'none')
FACTORISED_ORDERS = ('space_time', 'time_space')
KERNEL_INITS = ('random', 'central_frame', 'filter_inflation')
POSITIONAL_INITS = ('tile', 'resize', 'resize_tile')
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')


@dataclasses.dataclass
class Architecture:
  """What the network is (Scenic's `config.model`): input clip, layers, initialisation."""
  # Input clip: [T, H, W, C].
  num_frames: int = 8
  image_size: Tuple[int, int] = (64, 64)
  channels: int = 3
  # Architecture.
  variant: str = 'spatiotemporal'      # Model 1 / 2 / 3 / 4 of the paper
  tokenizer: str = 'tubelet'           # 'tubelet' (linear 3D patches), 'uniform_frame' (2D
                                       # patches of every frame) or 'conv' (a 3D CNN: hybrid)
  tubelet_size: Tuple[int, int, int] = (2, 16, 16)  # (t, h, w), time first: the frames and
                                       # pixels one token covers ('conv': its strides' product)
  # Convolutional tokenizer ('conv'): a (1, 3, 3) stem convolution at conv_strides[0], then per
  # width a 3x3x3 convolution, norm, ReLU and a max-pool of conv_strides[i + 1].
  conv_widths: Tuple[int, ...] = (16, 32, 64)
  conv_strides: Tuple[Tuple[int, int, int], ...] = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
  conv_norm: str = 'group'             # 'group' (per clip: 8 groups) or 'batch' (statistics
                                       # synchronised over replicas; refused with accumulation
                                       # on several replicas). Group: tests/test_learnability.py
  conv_input: str = 'rgb+diff'         # 'rgb', or 'rgb+diff': each frame's difference from the
                                       # previous one as 3 more stem channels (zero for the
                                       # first): the hard benchmark's 3D CNN learns with
                                       # them and not without (README, issue 28)
  conv_head: bool = True               # the CNN's features, averaged over the clip, also give
                                       # a logit added to the transformer's (a skip past it)
  hidden_size: int = 64
  num_layers: int = 4                  # spatial / joint layers
  num_temporal_layers: int = 2         # Model 2 only
  num_heads: int = 4
  mlp_dim: int = 128
  dropout: float = 0.0
  attention_dropout: float = 0.0
  stochastic_depth: float = 0.0        # drop rate of the last block (linear in depth)
  classifier: str = 'gap'              # 'token' (CLS), 'gap' (final norm, then mean) or
                                       # 'gap_fc_norm' (no final norm: mean, then fc_norm)
  positional: str = 'learned'          # 'learned' over all tokens, 'factorised' space + time,
                                       # 'sinusoidal' (fixed) or 'per_frame' (spatial table with
                                       # the CLS slot on every frame + one time table entry per
                                       # frame on the patches)
  n_classes: int = 2
  # Block options (defaults: the paper's ViViT; checkpoints of other families set them).
  activation: str = 'gelu'             # MLP: 'gelu' (exact erf) or 'gelu_tanh' (approximation)
  layer_norm_eps: float = 1e-6
  qkv_bias: str = 'qkv'                # which of query/key/value projections have a bias
  factorised_order: str = 'space_time'  # Model 3: 'space_time' (paper) or 'time_space'
                                       # (TimeSformer: time, temporal_dense, then space with the
                                       # CLS token copied to every frame and averaged back)
  # Initialisation from an image ViT (paper §3.4, models/checkpoints/vit_checkpoint.py).
  init_checkpoint: str = ''            # ViT .npz (google-research/vision_transformer keys)
  kernel_init: str = 'random'          # tubelet kernel from the 2D patch kernel
  init_positional: str = 'tile'        # 'tile' | 'resize' | 'resize_tile' (spatial table)
  kernel_init_checkpoint: str = ''     # .npz with only 'kernel' [h, w, C, D] (and 'bias')


@dataclasses.dataclass
class Recipe:
  """How it is trained (Scenic's optimiser/schedule configs): one place for the Trainer."""
  learning_rate: float = 1e-3
  weight_decay: float = 0.05
  warmup_steps: int = 100
  label_smoothing: float = 0.0
  batch_size: int = 16                 # per replica
  precision: str = 'float32'           # 'float32' | 'mixed_bfloat16' | 'mixed_float16'
  jit_compile: bool = False            # XLA, also under tf.distribute strategies
  clipnorm: float = 1.0                # clip by global norm (Scenic: 1); 0 = off
  accumulation_steps: int = 1          # optimiser update every k batches
  checkpoint_steps: int = 0            # training checkpoint every N steps (0: every epoch)
  layer_decay: float = 1.0             # layer-wise lr decay: block i of L trains at
                                       # lr * layer_decay^(L + 1 - i) (VideoMAE: 0.75); 1: off


@dataclasses.dataclass
class ViViTConfig(Recipe, Architecture):
  """Architecture plus training recipe, in one JSON-serialisable object (flat keys)."""

  def __post_init__(self):
    self.image_size = tuple(self.image_size)
    self.tubelet_size = tuple(self.tubelet_size)
    self.conv_widths = tuple(int(w) for w in self.conv_widths)
    self.conv_strides = tuple(tuple(int(v) for v in s) for s in self.conv_strides)
    if self.tokenizer == 'conv':
      self.tubelet_size = conv_footprint(self.conv_strides)
    if self.init_checkpoint and self.kernel_init == 'random':
      self.kernel_init = 'central_frame'  # Scenic's K400 choice; paper Table 1's best
    if self.tokenizer == 'uniform_frame':
      self.tubelet_size = (1,) + self.tubelet_size[1:]
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the offending field."""
    for field, allowed in (('variant', VARIANTS), ('tokenizer', TOKENIZERS),
                           ('classifier', CLASSIFIERS), ('positional', POSITIONAL),
                           ('kernel_init', KERNEL_INITS),
                           ('init_positional', POSITIONAL_INITS),
                           ('precision', PRECISIONS), ('activation', ACTIVATIONS),
                           ('qkv_bias', QKV_BIASES), ('conv_norm', CONV_NORMS),
                           ('conv_input', CONV_INPUTS),
                           ('factorised_order', FACTORISED_ORDERS)):
      if getattr(self, field) not in allowed:
        raise ValueError(f'{field}={getattr(self, field)!r} is not one of {allowed}')
    if self.tokenizer == 'conv':
      self._validate_conv()
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
    time_space = (self.variant == 'factorised_self_attention'
                  and self.factorised_order == 'time_space')
    if self.variant in ('factorised_self_attention', 'factorised_dot_product') and (
        self.classifier == 'token') and not time_space:
      raise ValueError(f'{self.variant} (Model 3/4) has no CLS token: use '
                       "classifier='gap' (or factorised_order='time_space')")
    if self.factorised_order == 'time_space' and self.variant != 'factorised_self_attention':
      raise ValueError("factorised_order='time_space' is an option of "
                       f"variant='factorised_self_attention', not {self.variant!r}")
    if self.layer_norm_eps <= 0:
      raise ValueError(f'layer_norm_eps must be positive, got {self.layer_norm_eps}')
    if self.variant == 'factorised_dot_product' and self.num_heads % 2:
      raise ValueError(f'factorised_dot_product (Model 4) splits the heads between space and '
                       f'time: num_heads {self.num_heads} must be even')
    for field in ('batch_size', 'accumulation_steps'):
      if getattr(self, field) < 1:
        raise ValueError(f'{field} must be at least 1, got {getattr(self, field)}')
    if not 0 < self.layer_decay <= 1:
      raise ValueError(f'layer_decay must be within (0, 1], got {self.layer_decay}')
    if self.clipnorm < 0 or self.checkpoint_steps < 0:
      raise ValueError('clipnorm and checkpoint_steps must not be negative')
    if self.n_classes < 2:
      raise ValueError(f'n_classes must be at least 2, got {self.n_classes}')

  def _validate_conv(self) -> None:
    if len(self.conv_strides) != len(self.conv_widths) + 1 or not self.conv_widths:
      raise ValueError(f'conv_strides needs one (t, h, w) for the stem and one per conv_widths '
                       f'entry: {len(self.conv_widths)} width(s), {len(self.conv_strides)} '
                       'stride(s)')
    if any(len(s) != 3 or min(s) < 1 for s in self.conv_strides) or min(self.conv_widths) < 1:
      raise ValueError(f'conv_strides must be positive (t, h, w) triples and conv_widths '
                       f'positive, got {self.conv_strides} / {self.conv_widths}')
    if self.init_checkpoint or self.kernel_init_checkpoint:
      raise ValueError("checkpoints load into the linear tokenizer: tokenizer='conv' trains its "
                       "stem from scratch (use tokenizer='tubelet' with a checkpoint)")

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

  @property
  def architecture(self) -> Architecture:
    return Architecture(**{f.name: getattr(self, f.name)
                           for f in dataclasses.fields(Architecture)})

  @property
  def recipe(self) -> Recipe:
    return Recipe(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)})

  def replace(self, **changes) -> 'ViViTConfig':
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> Dict[str, Any]:
    d = dataclasses.asdict(self)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'ViViTConfig':
    """A saved config (`to_dict`); a field it lacks, added after it was saved, takes the value
    models had before the field existed (SAVED_BEFORE), not today's default."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f'unknown ViViT config keys: {sorted(unknown)}')
    return cls(**{**SAVED_BEFORE, **d})

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> 'ViViTConfig':
    return cls.from_dict(json.loads(text))


def conv_footprint(strides) -> Tuple[int, int, int]:
  """(t, h, w) frames and pixels per token of a convolutional tokenizer: its strides'
  product."""
  t, h, w = 1, 1, 1
  for st, sh, sw in strides:
    t, h, w = t * st, h * sh, w * sw
  return t, h, w


# Backbones of ViT (Dosovitskiy et al.) as used by ViViT: (hidden, layers, heads, mlp).
BACKBONES = {
    'ti': (192, 12, 3, 768),
    's': (384, 12, 6, 1536),
    'b': (768, 12, 12, 3072),
    'l': (1024, 24, 16, 4096),
    'h': (1280, 32, 16, 5120),
}


# The recipe of the ViT-backbone presets: 16-32 frames at 224 px on GPU/TPU, fine-tuned from an
# image ViT (AdamW; Scenic clips at global norm 1). Batch 8 per replica x 8 accumulation steps
# = 64 clips per update per replica (the paper's batch 64).
GPU_RECIPE = dict(batch_size=8, accumulation_steps=8, learning_rate=1e-4, weight_decay=0.05,
                  warmup_steps=500, precision='mixed_bfloat16', jit_compile=True, clipnorm=1.0,
                  checkpoint_steps=500)


# Hybrids (ViT paper §3.1: a CNN's feature map as the tokens): a small 3D CNN tokenizer, then
# the transformer. From scratch they learn motion that the linear tokenizer does not (README,
# hard synthetic benchmark).
HYBRID_PRESETS: Dict[str, Dict[str, Any]] = {
    # vivit-tiny's transformer on a 3-block CNN (16/32/64): 64 px, T = 8 → 2 x 4 x 4 tokens.
    'vivit-hybrid-tiny': dict(tokenizer='conv'),
    # ViT-B on a 64/128/256 CNN for GPUs/TPUs: 16 frames at 224 px → 4 x 14 x 14 tokens;
    # trained from scratch, so a from-scratch learning rate.
    'vivit-hybrid-b': dict(tokenizer='conv', num_frames=16, image_size=(224, 224),
                           conv_widths=(64, 128, 256), hidden_size=768,
                           num_layers=12,
                           num_heads=12, mlp_dim=3072, stochastic_depth=0.1,
                           **{**GPU_RECIPE, 'learning_rate': 5e-4}),
}


def preset(name: str, **overrides) -> ViViTConfig:
  """`vivit-tiny` (2-core CPU, linear tokenizer), a hybrid (`HYBRID_PRESETS`: conv tokenizer;
  `vivit-hybrid-tiny` is the default pipeline's), `vivit-<ti|s|b|l|h>-<p>x<t>`, or a hub
  checkpoint's fine-tuning preset (`models/checkpoints/hub_presets.py`, with `init_checkpoint` its
  Hugging Face directory).

  A preset carries its clip, architecture and recipe; a Hugging Face `init_checkpoint`'s
  config.json decides the architecture (and the clip's frames and size); `overrides` win over
  each of them (a conflict with the checkpoint is refused when the model is built).
  """
  base: Dict[str, Any] = {}
  spec = None
  init = overrides.get('init_checkpoint', '')
  hub = hub_presets.HUB_PRESETS.get(name)
  if hub:
    if not init:
      raise ValueError(hub_presets.needs_directory(name))
    base = hub.recipe_dict()
  elif name in HYBRID_PRESETS:
    base = dict(HYBRID_PRESETS[name])
    if init or overrides.get('kernel_init_checkpoint'):  # a checkpoint brings linear patches
      base['tokenizer'] = 'tubelet'
  elif name != 'vivit-tiny':
    try:
      _, backbone, patch = name.split('-')
      p, t = (int(v) for v in patch.split('x'))
      hidden, layers, heads, mlp = BACKBONES[backbone]
    except (ValueError, KeyError):
      raise ValueError(f'unknown preset {name!r}; use vivit-tiny, {", ".join(HYBRID_PRESETS)}, '
                       f'vivit-<'
                       f'{"|".join(BACKBONES)}>-<patch>x<frames>, e.g. vivit-b-16x2, or a hub '
                       f'checkpoint\'s: {", ".join(hub_presets.HUB_PRESETS)}') from None
    base = dict(num_frames=32, image_size=(224, 224), tubelet_size=(t, p, p),
                hidden_size=hidden, num_layers=layers, num_heads=heads, mlp_dim=mlp,
                num_temporal_layers=4, classifier='token', stochastic_depth=0.1, **GPU_RECIPE)
  if init and _is_hf_directory(init):
    # local: TensorFlow, for a Hugging Face directory only; run's options are checked without it.
    from vivit_tfx.models.checkpoints import hf_checkpoint  # pylint: disable=g-import-not-at-top
    spec = hf_checkpoint.load_hf_config(init)
    if hub and spec.family not in hub.families:
      raise ValueError(f'preset {name} expects {hub.repo} ({"/".join(hub.families)}), but '
                       f'{init} holds a {spec.family} checkpoint')
    base.update(spec.architecture)
  if overrides.get('variant') in ('factorised_self_attention', 'factorised_dot_product'):
    base['classifier'] = 'gap'  # Models 3 and 4 have no CLS token (unless TimeSformer order)
  base.update(overrides)
  config = ViViTConfig(**base)
  if spec is not None:  # a flag that contradicts config.json: one line, before any data
    hf_checkpoint.check_architecture(config, spec)
  return config


def _is_hf_directory(path: str) -> bool:
  """`pixel_preprocessing.is_hf_directory`, imported here: that module needs TensorFlow."""
  from vivit_tfx.models.checkpoints import pixel_preprocessing  # pylint: disable=g-import-not-at-top
  return pixel_preprocessing.is_hf_directory(path)


PRESETS = ('vivit-tiny',) + tuple(HYBRID_PRESETS) + tuple(f'vivit-{b}-16x2' for b in BACKBONES)
