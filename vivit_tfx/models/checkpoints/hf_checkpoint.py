"""Hugging Face model directories (ViT, ViViT, VideoMAE, TimeSformer) into the project's ViViT.

A directory holds `config.json` (which decides the architecture), `model.safetensors` (or a
sharded `model.safetensors.index.json`) and `preprocessor_config.json`; read through
tf.io.gfile (local path, gs://, ram://, ...). Nothing is downloaded.

* ViT (`ViTModel`, `ViTForImageClassification`): as an image ViT `.npz` (models/vit_checkpoint:
  inflated tubelet kernel, positions tiled over time, any variant); the pooler is dropped.
* `VivitForVideoClassification`: Model 1 with CLS, learned positions and tanh GELU, 1:1.
* `VideoMAEForVideoClassification`: Model 1 without CLS, fixed sinusoidal positions, q/v
  biases only, mean pooling then `fc_norm`. `VideoMAEForPreTraining`: its encoder
  (`classifier='gap'`: the encoder's per-token final norm; with 'gap_fc_norm' that norm is
  dropped and `fc_norm` starts fresh, as transformers fine-tunes it); the decoder is ignored.
* `TimesformerForVideoClassification`: Model 3 with TimeSformer's block (time, temporal_dense,
  then space with the CLS token per frame), 2D patches per frame, per-frame positions.

Layouts: torch Linear [out, in] → kernel [in, out]; q/k/v [H*hd, D] → [D, H, hd]; attention
output [D, H*hd] → [H, hd, D]; Conv3d [D, C, t, h, w] → [t, h, w, C, D]; Conv2d
[D, C, h, w] → [h, w, C, D]; TimeSformer's fused qkv rows are [q; k; v]. Token order is
time-major in both (TimeSformer's space-major order only matters for its factorised tables).
Heads: kept when the checkpoint's labels are the run's classes (rows permuted when only the
order differs); with 2 labels the binary logit is W[1] - W[0], b[1] - b[0]; otherwise the
model's fresh head.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from safetensors import numpy as safetensors_numpy
import tensorflow as tf

from vivit_tfx.models.checkpoints import pixel_preprocessing, vit_checkpoint
from vivit_tfx.models.checkpoints.vit_checkpoint import BLOCK, POSEMB, CheckpointMismatch, Loader

FAMILIES = ('vit', 'vivit', 'videomae', 'videomae-pretraining', 'timesformer')
_ACTIVATIONS = {'gelu': 'gelu', 'gelu_fast': 'gelu_tanh', 'gelu_new': 'gelu_tanh',
                'gelu_pytorch_tanh': 'gelu_tanh'}
# Fields an image ViT does not decide (paper §3.4: any clip length, variant and pooling).
_IMAGE_FREE = ('num_frames', 'variant', 'tokenizer', 'classifier', 'positional', 'image_size')
_IGNORED = ((r'pooler\.', 'ViT pre-logits (dense + tanh on CLS): no counterpart, dropped'),
            (r'(decoder\.|encoder_to_decoder\.|mask_token)',
             'VideoMAE pre-training decoder: not part of the classifier'))


@dataclasses.dataclass
class HFCheckpoint:
  """What a model directory is: family, the ViViTConfig fields it decides, its processor."""
  path: str
  family: str
  architecture: Dict[str, Any]       # ViViTConfig fields
  preprocessing: pixel_preprocessing.PixelPreprocessing  # its processor (or family defaults)
  id2label: Dict[int, str]           # {} when the checkpoint has no classification head
  config: Dict[str, Any]             # config.json as is

  @property
  def num_labels(self) -> int:
    return len(self.id2label)

  def decided(self) -> Dict[str, Any]:
    """The fields a run's config must match."""
    free = _IMAGE_FREE if self.family == 'vit' else ()
    return {k: v for k, v in self.architecture.items() if k not in free}


def _read_json(path: str) -> Dict[str, Any]:
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise CheckpointMismatch(f'{path}: not JSON ({e})') from None


def _pair(value) -> Tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


def _family(config: Dict[str, Any], path: str) -> str:
  model_type = config.get('model_type', '')
  if model_type == 'videomae':
    return ('videomae-pretraining' if 'VideoMAEForPreTraining' in config.get('architectures', ())
            else 'videomae')
  if model_type in FAMILIES:
    return model_type
  raise CheckpointMismatch(f'{path}/config.json: model_type {model_type!r} is not one of vit, '
                           'vivit, videomae, timesformer')


def _architecture(family: str, c: Dict[str, Any], path: str) -> Dict[str, Any]:
  act = c.get('hidden_act', 'gelu')
  if act not in _ACTIVATIONS:
    raise CheckpointMismatch(f'{path}/config.json: hidden_act {act!r} is not one of '
                             f'{sorted(_ACTIVATIONS)}')
  arch = dict(hidden_size=c['hidden_size'], num_layers=c['num_hidden_layers'],
              num_heads=c['num_attention_heads'], mlp_dim=c['intermediate_size'],
              activation=_ACTIVATIONS[act], layer_norm_eps=float(c.get('layer_norm_eps', 1e-12)),
              image_size=_pair(c.get('image_size', 224)), variant='spatiotemporal',
              tokenizer='tubelet', classifier='token', positional='learned', qkv_bias='qkv',
              factorised_order='space_time')
  patch = c.get('patch_size', 16)
  if family == 'vit':  # Model 1 with the paper's 2-frame tubelets (any clip length)
    arch.update(num_frames=2, tubelet_size=(2, patch, patch),
                qkv_bias='qkv' if c.get('qkv_bias', True) else 'none')
  elif family == 'vivit':
    arch.update(num_frames=c['num_frames'], tubelet_size=tuple(c['tubelet_size']))
  elif family.startswith('videomae'):
    bias = c.get('qv_bias', c.get('qkv_bias', True))  # transformers 5.x / 4.x name
    pooled = c.get('use_mean_pooling', True) and family == 'videomae'
    arch.update(num_frames=c['num_frames'], tubelet_size=(c['tubelet_size'], patch, patch),
                classifier='gap_fc_norm' if pooled else 'gap', positional='sinusoidal',
                qkv_bias='qv' if bias else 'none')
  else:  # timesformer
    if c.get('attention_type', 'divided_space_time') != 'divided_space_time':
      raise CheckpointMismatch(f'{path}/config.json: attention_type '
                               f"{c['attention_type']!r}: only 'divided_space_time' maps")
    arch.update(num_frames=c['num_frames'], tubelet_size=(1, patch, patch),
                variant='factorised_self_attention', tokenizer='uniform_frame',
                positional='per_frame', factorised_order='time_space',
                qkv_bias='qkv' if c.get('qkv_bias', True) else 'none')
  return arch


def load_hf_config(path: str) -> HFCheckpoint:
  """Reads config.json and the processor (preprocessor_config.json, else the family's
  transformers defaults) of a model directory."""
  config_path = posixpath.join(path, 'config.json')
  if not tf.io.gfile.exists(config_path):
    raise CheckpointMismatch(f'{path}: no config.json (pass a Hugging Face model directory; '
                             'nothing is downloaded)')
  config = _read_json(config_path)
  family = _family(config, path)
  try:
    arch = _architecture(family, config, path)
  except KeyError as e:
    raise CheckpointMismatch(f'{config_path}: no {e.args[0]!r}') from None
  preprocessing = pixel_preprocessing.choose('processor', path)
  has_head = any(a.endswith('Classification') for a in config.get('architectures', ()))
  id2label = ({int(k): v for k, v in config.get('id2label', {}).items()} if has_head else {})
  return HFCheckpoint(path, family, arch, preprocessing, id2label, config)


def check_architecture(config, spec: HFCheckpoint) -> None:
  """Raises CheckpointMismatch naming the first ViViTConfig field that conflicts."""
  for field, value in spec.decided().items():
    mine = getattr(config, field)
    if field == 'tubelet_size' and spec.family == 'vit':
      mine, value = mine[1:], value[1:]  # an image ViT fixes the patch, not its length
    if field in ('num_frames', 'image_size') and spec.architecture['positional'] == 'sinusoidal':
      continue  # a fixed table fits any clip
    if field == 'classifier' and spec.family == 'videomae-pretraining' and mine in (
        'gap', 'gap_fc_norm'):
      continue  # its encoder with its final norm, or a fresh fc_norm as transformers fine-tunes
    if (tuple(mine) if isinstance(mine, (list, tuple)) else mine) != (
        tuple(value) if isinstance(value, (list, tuple)) else value):
      raise CheckpointMismatch(f'{field}={mine!r} conflicts with the {spec.family} checkpoint '
                               f'{spec.path} ({field}={value!r} in its config.json)')


def read_weights(path: str) -> Tuple[Dict[str, np.ndarray], str]:
  """Every tensor of model.safetensors (or its shards) as float32 NumPy, plus the sha256 of
  the file bytes."""
  single = posixpath.join(path, 'model.safetensors')
  index = posixpath.join(path, 'model.safetensors.index.json')
  if tf.io.gfile.exists(single):
    files = [single]
  elif tf.io.gfile.exists(index):
    files = [posixpath.join(path, f)
             for f in sorted(set(_read_json(index)['weight_map'].values()))]
  else:
    bins = tf.io.gfile.glob(posixpath.join(path, '*.bin'))
    raise CheckpointMismatch(
        f'{path}: no model.safetensors' + (
            f' ({posixpath.basename(bins[0])} is a pickled torch file: convert it to '
            'safetensors, e.g. save_pretrained(dir, safe_serialization=True))' if bins else ''))
  digest, tensors = hashlib.sha256(), {}
  for name in files:
    with tf.io.gfile.GFile(name, 'rb') as f:
      data = f.read()
    digest.update(data)
    try:
      tensors.update(safetensors_numpy.load(data))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointMismatch(f'{name}: not a safetensors file ({e})') from None
  return {k: v.astype(np.float32) for k, v in tensors.items()}, digest.hexdigest()


# ---------------------------------------------------------------- HF names → canonical names


class _Names:
  """Canonical (vit_checkpoint) key → (array in the model's layout, the HF key it came from)."""

  def __init__(self, hf: Dict[str, np.ndarray], heads: int):
    self.hf, self.heads = hf, heads
    self.arrays: Dict[str, np.ndarray] = {}
    self.source: Dict[str, str] = {}

  def put(self, key: str, hf_key: str, value: Optional[np.ndarray] = None) -> None:
    if hf_key in self.hf:
      self.arrays[key] = self.hf[hf_key] if value is None else value
      self.source[key] = hf_key

  def linear(self, key: str, hf_prefix: str) -> None:
    if hf_prefix + 'weight' in self.hf:
      self.put(key + 'kernel', hf_prefix + 'weight', self.hf[hf_prefix + 'weight'].T)
    self.put(key + 'bias', hf_prefix + 'bias')

  def norm(self, key: str, hf_prefix: str) -> None:
    self.put(key + 'scale', hf_prefix + 'weight')
    self.put(key + 'bias', hf_prefix + 'bias')

  def _heads(self, w: np.ndarray) -> np.ndarray:  # Linear [H*hd, D] → [D, H, hd]
    return w.T.reshape(w.shape[1], self.heads, -1)

  def attention(self, key: str, hf_prefix: str, biases: Dict[str, str]) -> None:
    """HF ViT attention (`attention.attention.{query,key,value}`, `attention.output.dense`);
    `biases`: projection → the HF key of its bias."""
    for name in ('query', 'key', 'value'):
      w = hf_prefix + f'attention.attention.{name}.weight'
      if w in self.hf:
        self.put(f'{key}{name}/kernel', w, self._heads(self.hf[w]))
      b = biases.get(name)
      if b in self.hf:
        self.put(f'{key}{name}/bias', b, self.hf[b].reshape(self.heads, -1))
    self._out(key, hf_prefix + 'attention.output.dense.')

  def fused_attention(self, key: str, hf_prefix: str) -> None:
    """TimeSformer: `attention.attention.qkv` rows [q; k; v]."""
    w, b = hf_prefix + 'attention.qkv.weight', hf_prefix + 'attention.qkv.bias'
    if w not in self.hf:
      return
    for i, name in enumerate(('query', 'key', 'value')):
      d = self.hf[w].shape[1]
      self.put(f'{key}{name}/kernel', w, self._heads(self.hf[w][i * d:(i + 1) * d]))
      if b in self.hf:
        self.put(f'{key}{name}/bias', b, self.hf[b][i * d:(i + 1) * d].reshape(self.heads, -1))
    self._out(key, hf_prefix + 'output.dense.')

  def _out(self, key: str, hf_prefix: str) -> None:
    w = hf_prefix + 'weight'
    if w in self.hf:
      self.put(key + 'out/kernel', w, self.hf[w].T.reshape(self.heads, -1, self.hf[w].shape[0]))
    self.put(key + 'out/bias', hf_prefix + 'bias')


def _canonical(spec: HFCheckpoint, hf: Dict[str, np.ndarray]) -> _Names:
  family = spec.family
  prefix = {'vit': 'vit.' if any(k.startswith('vit.') for k in hf) else '', 'vivit': 'vivit.',
            'videomae': 'videomae.', 'videomae-pretraining': 'videomae.',
            'timesformer': 'timesformer.'}[family]
  names = _Names(hf, spec.config['num_attention_heads'])
  emb = prefix + 'embeddings.'
  w = emb + 'patch_embeddings.projection.weight'
  if w in hf:  # Conv2d [D, C, h, w] → [h, w, C, D]; Conv3d [D, C, t, h, w] → [t, h, w, C, D]
    names.put('embedding/kernel', w, hf[w].transpose(
        (2, 3, 1, 0) if hf[w].ndim == 4 else (2, 3, 4, 1, 0)))
  names.put('embedding/bias', emb + 'patch_embeddings.projection.bias')
  names.put('cls', emb + 'cls_token')
  names.put(POSEMB, emb + 'position_embeddings')
  names.put('time_embeddings', emb + 'time_embeddings')
  for i in range(spec.config['num_hidden_layers']):
    hf_block, block = f'{prefix}encoder.layer.{i}.', BLOCK.format(i)
    names.norm(block + 'LayerNorm_0/', hf_block + 'layernorm_before.')
    names.norm(block + 'LayerNorm_2/', hf_block + 'layernorm_after.')
    names.linear(block + 'MlpBlock_3/Dense_0/', hf_block + 'intermediate.dense.')
    names.linear(block + 'MlpBlock_3/Dense_1/', hf_block + 'output.dense.')
    attention = block + 'MultiHeadDotProductAttention_1/'
    if family == 'timesformer':
      names.fused_attention(attention, hf_block + 'attention.')
      names.fused_attention(block + 'TemporalAttention/', hf_block + 'temporal_attention.')
      names.norm(block + 'TemporalLayerNorm/', hf_block + 'temporal_layernorm.')
      names.linear(block + 'TemporalDense/', hf_block + 'temporal_dense.')
    else:
      q = hf_block + 'attention.attention.'
      biases = ({'query': q + 'q_bias', 'value': q + 'v_bias'} if family.startswith('videomae')
                else {n: q + f'{n}.bias' for n in ('query', 'key', 'value')})
      names.attention(attention, hf_block, biases)
  names.norm('Transformer/encoder_norm/', prefix + 'layernorm.')
  names.norm('fc_norm/', 'fc_norm.')
  names.linear('head/', 'classifier.')
  return names


# ------------------------------------------------------------------------------- loading


def _load_video(model, loader: Loader, spec: HFCheckpoint) -> None:
  """ViViT / VideoMAE / TimeSformer arrays into Model 1 or 3 (the config matches: checked)."""
  conv = model.tokenizer.projection
  kernel = loader.get('embedding/kernel')
  loader.arrays['embedding/kernel'] = kernel.reshape(conv.kernel.shape)  # TimeSformer: t = 1
  loader.assign(conv.kernel, 'embedding/kernel')
  loader.assign(conv.bias, 'embedding/bias')
  encoder = model.encoder
  if encoder.cls:
    loader.assign(encoder.cls.token, 'cls')
  position = encoder.position
  if position.kind == 'learned':
    loader.assign(position.table, POSEMB)
  elif position.kind == 'per_frame':
    loader.assign(position.spatial, POSEMB)
    loader.assign(position.temporal, 'time_embeddings')
  vit_checkpoint.load_blocks(loader, encoder)
  if spec.family == 'timesformer':
    for i, block in enumerate(encoder.blocks):
      prefix = BLOCK.format(i)
      loader.norm(block.norm_temporal, prefix + 'TemporalLayerNorm/')
      loader.attention(block.temporal_attention, prefix + 'TemporalAttention/')
      loader.dense(block.temporal_dense, prefix + 'TemporalDense/')
  if model.fc_norm and 'fc_norm/scale' in loader.arrays:
    loader.norm(model.fc_norm, 'fc_norm/')


def _load_head(model, loader: Loader, spec: HFCheckpoint,
               classes: Optional[Sequence[str]]) -> str:
  """Keeps, permutes or replaces the head; returns what was done (lineage, inspect)."""
  labels = [spec.id2label[i] for i in sorted(spec.id2label)]
  if not labels or 'head/kernel' not in loader.arrays:
    return 'new (the checkpoint has no classification head)'
  if classes is None:
    classes = labels
  classes = list(classes)
  if sorted(classes) != sorted(labels):
    return (f'new (the checkpoint\'s {len(labels)} labels are not the run\'s classes '
            f'{classes[:4]}{"..." if len(classes) > 4 else ""})')
  if model.head.kernel.shape[-1] != (1 if len(classes) == 2 else len(classes)):
    return (f'new (the model has {model.head.kernel.shape[-1]} logits, the checkpoint '
            f'{len(labels)} labels)')
  order = [labels.index(c) for c in classes]
  kernel = loader.get('head/kernel')[:, order]  # [D, C] in the run's class order
  bias = loader.get('head/bias')[order]
  if model.head.kernel.shape[-1] == 1:  # binary: softmax over 2 == sigmoid of the difference
    kernel, bias = kernel[:, 1:] - kernel[:, :1], bias[1:] - bias[:1]
  loader.arrays['head/kernel'], loader.arrays['head/bias'] = kernel, bias
  loader.dense(model.head, 'head/')
  return 'kept' + (' (rows reordered to the run\'s classes)' if order != sorted(order) else '') + (
      ' as the binary logit W[1] - W[0], b[1] - b[0]' if kernel.shape[-1] == 1 else '')


@dataclasses.dataclass
class LoadReport:
  """What `init_from_hf` did, in the checkpoint's and the model's names."""
  used: List[str]
  ignored: Dict[str, str]   # HF key → why
  missing: List[str]        # model variables the checkpoint did not fill
  head: str
  sha256: str


def _shape_hints(spec: HFCheckpoint) -> Dict[str, str]:
  """What in config.json decides the position tables' lengths (named in shape errors)."""
  if spec.family == 'vit':
    return {}
  fields = {'vivit': 'num_frames, image_size and tubelet_size',
            'timesformer': 'image_size and patch_size'}.get(
                spec.family, 'num_frames, image_size, patch_size and tubelet_size')
  return {POSEMB: f'its length follows {fields} in {posixpath.join(spec.path, "config.json")}',
          'time_embeddings': 'its length follows num_frames in '
                             f'{posixpath.join(spec.path, "config.json")}'}


def load(model, path: str, classes: Optional[Sequence[str]] = None) -> LoadReport:
  """Loads the model directory `path` into a built ViViT whose config matches it."""
  spec = load_hf_config(path)
  check_architecture(model.config, spec)
  hf, digest = read_weights(path)
  names = _canonical(spec, hf)
  loader = Loader(dict(names.arrays), path, names.source, hints=_shape_hints(spec))
  if spec.family == 'vit':
    vit_checkpoint.load_image_vit(model, loader)
  else:
    _load_video(model, loader, spec)
  head = _load_head(model, loader, spec, classes)
  used = sorted({names.source[k] for k in loader.used if k in names.source})
  ignored = {}
  for key in sorted(set(hf) - set(used)):
    why = next((w for pattern, w in _IGNORED if re.match(pattern, key)), None)
    if key.startswith('classifier.'):
      why = 'head: ' + head
    elif key.endswith('layernorm.weight') or key.endswith('layernorm.bias'):
      why = why or "encoder's per-token final norm: the model pools first, then fc_norm"
    ignored[key] = why or 'no counterpart in the model'
  missing = sorted(v.path for v in model.weights if v.path not in loader.assigned)
  return LoadReport(used, ignored, missing, head, digest)


def init_from_hf(model, path: str, classes: Optional[Sequence[str]] = None) -> Dict[str, str]:
  """`load`, then the lineage record: {'init_checkpoint', 'init_checkpoint_sha256',
  'hf_family', 'hf_head'}."""
  report = load(model, path, classes)
  return {'init_checkpoint': path, 'init_checkpoint_sha256': report.sha256,
          'hf_family': load_hf_config(path).family, 'hf_head': report.head}
