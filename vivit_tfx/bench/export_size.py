"""Export size: what `run_fn`'s export writes for a preset (untrained weights, optimizer state
built as after training), against the parameters' bytes. Prints a table.

The Transform graph is stood in for by `DecodeOnlyTransform` (the same JPEG decode, resize and
crop as `preprocessing_fn`, without the analysed mean/std constants, or with a checkpoint's
fixed normalisation), so no Beam run is needed.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Dict, List, Optional

import tensorflow as tf

from vivit_tfx.data import features
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.models.trainer import export, training

from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.checkpoints.pixel_preprocessing import PixelPreprocessing
from vivit_tfx.models.network.vivit_config import preset
from vivit_tfx.models.trainer import preprocessing


class DecodeOnlyTransform:
  """The two things `export` needs from a TFTransformOutput, for clips of T JPEG frames;
  `pixels` (not the dataset's statistics) normalises as Transform would."""

  def __init__(self, num_frames: int, image_size, pixels: Optional[PixelPreprocessing] = None):
    self.num_frames, self.image_size = num_frames, tuple(image_size)
    self.pixels = pixels.for_image_size(image_size) if pixels else None

  def raw_feature_spec(self):
    return {features.FRAMES: tf.io.FixedLenFeature([self.num_frames], tf.string)}

  def transform_features_layer(self):
    size, pixels = self.image_size, self.pixels

    class _Layer(tf.Module):

      def __call__(self, inputs):  # {'frames': [B, T] JPEG} → {'clip_xf': [B, T, H, W, 3]}
        frames = inputs[features.FRAMES]
        return {features.CLIP_XF: pixels.normalise(preprocessing.decode_pixels(frames, pixels))
                if pixels else preprocessing.decode_clips(frames, size)}

    return _Layer()


def directory_bytes(path: str) -> Dict[str, int]:
  """{'total': bytes under path, 'variables': bytes under path/variables} via tf.io.gfile."""
  sizes = {'total': 0, 'variables': 0}
  for root, _, files in tf.io.gfile.walk(path):
    for name in files:
      try:
        size = tf.io.gfile.stat(os.path.join(root, name)).length
      except tf.errors.NotFoundError:  # ram:// lists 'assets.extra/x' under 'assets' as '.extra/x'
        continue
      sizes['total'] += size
      if os.path.basename(root.rstrip('/')) == 'variables':
        sizes['variables'] += size
  return sizes


def measure(preset_name: str, variant: str = 'spatiotemporal') -> Dict:
  config = preset(preset_name, variant=variant)
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=10)
  model.optimizer.build(model.trainable_variables)  # slots as after training
  out = tempfile.mkdtemp(prefix='export_size_')
  export.export(model, config, DecodeOnlyTransform(config.num_frames, config.image_size), out,
                ModelClipConfig(num_frames=config.num_frames,
                                frame_size=tuple(config.image_size)))
  params = model.count_params()
  optimizer_values = sum(int(tf.size(v)) for v in model.optimizer.variables)
  sizes = directory_bytes(out)
  tf.io.gfile.rmtree(out)
  return {'preset': preset_name, 'params_m': params / 1e6, 'param_mb': params * 4 / 2**20,
          'optimizer_m': optimizer_values / 1e6, 'variables_mb': sizes['variables'] / 2**20,
          'total_mb': sizes['total'] / 2**20}


def format_table(rows: List[Dict]) -> str:
  lines = ['| preset | params (M) | params float32 (MiB) | optimizer values not exported (M) | '
           'SavedModel variables (MiB) | exported directory (MiB) |', '|' + '---|' * 6]
  for r in rows:
    lines.append(f"| {r['preset']} | {r['params_m']:.2f} | {r['param_mb']:.1f} | "
                 f"{r['optimizer_m']:.1f} | {r['variables_mb']:.1f} | {r['total_mb']:.1f} |")
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench export', description=__doc__)
  parser.add_argument('--presets', nargs='+', default=['vivit-tiny', 'vivit-b-16x2'])
  args = parser.parse_args(argv)
  print(format_table([measure(p) for p in args.presets]))
  return 0
