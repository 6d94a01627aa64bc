"""`vivit-tfx checkpoint inspect|export`: a Hugging Face model directory as the project sees it,
and as a SavedModel with its own head and preprocessing (check a download before training).

The SavedModel's signatures:
* `serving_default`: `frames` uint8 [B, T, H, W, 3] (any H x W) → `logits`, `probabilities`
  [B, C], the checkpoint's own preprocessing (its processor: resize, crop, rescale, mean/std)
  applied inside;
* `pixels`: `pixel_values` float32 [B, T, h, w, 3], already normalised → `logits` [B, C].
An image ViT is Model 1 with 2-frame tubelets (central-frame inflation): at T = 2 a static
clip gives the image model's logits. A 2-label checkpoint becomes the binary logit d, exported
as logits [-d/2, d/2] (transformers' softmax, not its raw logits).
"""
from __future__ import annotations

import collections
import os
from typing import Any, Dict, List, Tuple

import tensorflow as tf

from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.models.checkpoints import hf_checkpoint, pixel_preprocessing
from vivit_tfx.models.checkpoints.vit_checkpoint import CheckpointMismatch
from vivit_tfx.models.network.vivit import ViViT, build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import export as model_export


def checkpoint_model(path: str, num_frames: int = 0
                     ) -> Tuple[ViViT, hf_checkpoint.HFCheckpoint, hf_checkpoint.LoadReport]:
  """The checkpoint as it is (its own head, float32), for clips of `num_frames` (0: its own)."""
  spec = hf_checkpoint.load_hf_config(path)
  arch = dict(spec.architecture)
  if num_frames:
    arch['num_frames'] = num_frames
  try:
    config = ViViTConfig(**arch, n_classes=max(spec.num_labels, 2), init_checkpoint=path)
  except ValueError as e:
    raise CheckpointMismatch(f'{path}: --num-frames {num_frames}: {e}') from None
  if num_frames:
    hf_checkpoint.check_architecture(config, spec)
  model = build_vivit(config)
  report = hf_checkpoint.load(model, path)
  return model, spec, report


def inspect(path: str) -> List[str]:
  """Lines: family, the architecture it maps to, the preprocessing, the tensors used, ignored
  (grouped by why) and missing."""
  model, spec, report = checkpoint_model(path)
  arch = ', '.join(f'{k}={v}' for k, v in sorted(spec.architecture.items()))
  labels = [spec.id2label[i] for i in sorted(spec.id2label)]
  lines = [f'checkpoint: {path}',
           f'family: {spec.family} ({", ".join(spec.config.get("architectures", []))})',
           f'maps to: ViViT {arch}',
           f'preprocessing: {spec.preprocessing.describe()}',
           f'labels: {len(labels)}' + (f' ({", ".join(labels[:5])}'
                                        f'{", ..." if len(labels) > 5 else ""})' if labels else ''),
           f'head: {report.head}',
           f'tensors used: {len(report.used)}']
  groups: Dict[str, List[str]] = collections.defaultdict(list)
  for key, why in report.ignored.items():
    groups[why].append(key)
  for why, keys in groups.items():
    lines.append(f'ignored: {len(keys)} ({keys[0]}{", ..." if len(keys) > 1 else ""}): {why}')
  lines.append(f'missing (left as initialised): {len(report.missing)}' +
               (f' ({", ".join(report.missing[:4])}{", ..." if len(report.missing) > 4 else ""})'
                if report.missing else ''))
  return lines


def signatures(model: ViViT, pixels: pixel_preprocessing.PixelPreprocessing,
               num_labels: int) -> Dict[str, Any]:
  """serving_default (uint8 frames, the checkpoint's preprocessing) and pixels (normalised)."""
  c = model.config
  clip_shape = [None, c.num_frames, *c.image_size, c.channels]

  def logits_of(pixel_values):  # [B, T, h, w, 3] → [B, C]
    logits = model(tf.ensure_shape(pixel_values, clip_shape), training=False)
    return tf.concat([-logits / 2, logits / 2], -1) if num_labels == 2 else logits

  @tf.function(input_signature=[tf.TensorSpec(clip_shape, tf.float32, name='pixel_values')])
  def from_pixels(pixel_values):
    return {'logits': logits_of(pixel_values)}

  @tf.function(input_signature=[tf.TensorSpec([None, c.num_frames, None, None, c.channels],
                                              tf.uint8, name='frames')])
  def serve(frames):
    logits = logits_of(pixel_preprocessing.preprocess_frames(frames, pixels))
    return {'logits': logits, 'probabilities': tf.nn.softmax(logits)}

  return {'serving_default': serve, 'pixels': from_pixels}


def export(path: str, output: str, num_frames: int = 0) -> ModelClipConfig:
  """Writes the SavedModel to `output` (which must not exist) and its clip config; returns
  that clip config."""
  if tf.io.gfile.exists(output):
    raise CheckpointMismatch(f'--output {output} already exists (choose a new directory; '
                             'nothing is overwritten)')
  if '://' not in path + output:
    src, dst = os.path.realpath(path), os.path.realpath(output)
    if os.path.commonpath([src, dst]) in (src, dst):
      raise CheckpointMismatch(f'--output {output} is {path} or nested with it: the export '
                               'would write into the checkpoint (or around it); choose a '
                               'directory outside it')
  model, spec, report = checkpoint_model(path, num_frames)
  if not spec.num_labels:
    raise CheckpointMismatch(f'{path}: a {spec.family} checkpoint without a classification '
                             'head (no id2label/classifier): nothing to export as logits')
  config = model.config
  pixels = spec.preprocessing.for_image_size(config.image_size)
  tf.saved_model.save(model, output, signatures=signatures(model, pixels, spec.num_labels))
  clip = ModelClipConfig(
      class_names=tuple(spec.id2label[i] for i in sorted(spec.id2label)),
      num_frames=config.num_frames, frame_size=tuple(config.image_size),
      pixels=pixels.to_dict(),
      provenance={'init_checkpoint': path, 'init_checkpoint_sha256': report.sha256,
                  'hf_family': spec.family}).with_architecture(config.to_dict())
  clip.write(os.path.join(output, model_export.CLIP_CONFIG_FILE))
  return clip
