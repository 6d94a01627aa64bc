"""How a video becomes a clip record (`ClipConfig`), and the clip config a model carries
(`assets.extra/clip_config.json`, `ModelClipConfig`): how it wants its clips.

`ModelClipConfig` is the one typed contract of a model's clip settings, from the pipeline to
serving: the pipeline builds it for the Trainer's `custom_config['clip']`, both exports (the
Trainer's `models/trainer/export.py`, `models/checkpoints/hf_export.py`) and the TFLite export
write it with
`write`, and every tool that feeds a model (predict, the timeline, `watch`, `scan`, the
baseline check, the Keras loader, the report) reads it with `clip_config_of`. No other module
parses clip_config.json (`tests/test_clip_contract.py`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from vivit_tfx.data import remote_files, sampling
# Only for models exported before class names were recorded (the RLVS layout's classes).
from vivit_tfx.data.features import CLASS_NAMES

CLIP_CONFIG_FILE = os.path.join('assets.extra', 'clip_config.json')
TFLITE_SUFFIX = '.tflite'  # a TFLite model (`vivit-tfx export`), its clip config beside it
TFLITE_CLIP_CONFIG_SUFFIX = '.clip_config.json'
TFLITE_QUANTIZATIONS = ('none', 'float16', 'int8')  # `export --quantize`, `run --tflite`
# The file each quantisation is written to: <stem>.tflite and <stem>.clip_config.json.
TFLITE_FILE_STEMS = {'none': 'float32', 'float16': 'float16', 'int8': 'int8'}
# The default sampling rate: T = 8 frames span 1 s (Scenic's ViViT: 32 frames at stride 2 of
# 25 fps, 12.5 fps, 2.56 s).
DEFAULT_SAMPLE_FPS = 8.0


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """How a video becomes a record: frames per clip (T), frame size (H, W), JPEG quality, and
  the temporal sampling rule.

  sample_fps > 0: every s-th source frame, s the integer stride whose rate is nearest
  sample_fps (`sampling.frame_stride`: even steps; at 8 fps, 7.5 fps from 30 or 15, 8.3 from
  25, 6 from 12, 10 from 10), over at most the central `max_duration_s` of the video (a clip
  of T frames spans about T / sample_fps s); the record holds `stored_frames` slots, the
  frames then empty strings. Clips are cut from them later (a random position in training, K
  evenly spaced views at evaluation: `data.sampling`).
  sample_fps = 0: T frames spread over the whole video (one clip per video; the rule of models
  exported before the rate rule became the default).
  """
  num_frames: int = 8
  frame_size: Tuple[int, int] = (64, 64)
  jpeg_quality: int = 90
  sample_fps: float = DEFAULT_SAMPLE_FPS
  max_duration_s: float = 10.0

  @property
  def stored_frames(self) -> int:
    """Frame slots per record (N)."""
    return sampling.stored_count(self.num_frames, self.sample_fps, self.max_duration_s)


class NoModelError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class ModelClipConfig(ClipConfig):
  """How a model wants its clips (assets.extra/clip_config.json), with defaults: the
  ingestion ClipConfig (T, frame size, sampling rule) plus the classes, the views, the pixel
  normalisation, the architecture it was built with and where it came from.

  The file is this object's `to_dict` (provenance keys at the top level, as models exported
  before this type wrote them); `from_dict` reads any of those files back.
  """
  class_names: Tuple[str, ...] = CLASS_NAMES  # label order
  positive_class: str = ''  # binary sets: class_names[1]
  num_views: int = 1  # K clips per video averaged by serving_default
  sample_fps: float = 0.0  # a model whose clip config names no rate takes T over the video
  pixels: Optional[Mapping[str, Any]] = None  # PixelPreprocessing.to_dict(); None: x/255
  # ViViTConfig.to_dict() less num_frames, which the clip holds once (`with_architecture`)
  vivit: Optional[Mapping[str, Any]] = None
  # Where the model came from, for lineage: init_checkpoint(_sha256), hf_family, tflite, …
  provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_dict(cls, clip: Mapping[str, Any]) -> 'ModelClipConfig':
    """Any clip config this project wrote (a file's JSON or `custom_config['clip']`); keys
    that are no field are provenance, empty values take the field's default."""
    names = {f.name for f in dataclasses.fields(cls)} - {'provenance'}
    typed = {k: tuple(v) if isinstance(v, list) and k != 'vivit' else v
             for k, v in clip.items() if k in names and v not in (None, '')}
    if 'frame_size' in typed:
      typed['frame_size'] = tuple(int(x) for x in typed['frame_size'])
    provenance = {**clip.get('provenance', {}),
                  **{k: v for k, v in clip.items() if k not in names and k != 'provenance'}}
    return cls(**typed, provenance=provenance)

  def to_dict(self) -> Dict[str, Any]:
    """The JSON form: the fields (lists for tuples, no None), then the provenance keys."""
    out = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name != 'provenance' and value is not None:
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return {**out, **self.provenance}

  def with_classes(self, names: Sequence[str]) -> 'ModelClipConfig':
    """The same settings for the classes `names` (label order). The one positive-class rule:
    a binary set's is label 1 (its model's sigmoid scores label 1); a multi-class set keeps
    the named one when it is among `names`, else has none."""
    names = tuple(names)
    if len(names) == 2:
      positive = names[1]
    else:
      positive = self.positive_class if self.positive_class in names else ''
    return self.replace(class_names=names, positive_class=positive)

  def replace(self, **changes) -> 'ModelClipConfig':
    return dataclasses.replace(self, **changes)

  def with_provenance(self, **facts) -> 'ModelClipConfig':
    return self.replace(provenance={**self.provenance, **facts})

  def with_architecture(self, vivit: Mapping[str, Any]) -> 'ModelClipConfig':
    """The model's architecture record (ViViTConfig.to_dict()), kept without the clip length,
    which this config holds once (`num_frames`); the two must agree."""
    frames = vivit.get('num_frames', self.num_frames)
    if frames != self.num_frames:
      raise ValueError(f'the architecture takes {frames} frames, the clip config '
                       f'{self.num_frames}')
    return self.replace(vivit={k: v for k, v in vivit.items() if k != 'num_frames'})

  def architecture(self) -> Optional[Dict[str, Any]]:
    """The architecture record with the clip length (ViViTConfig.from_dict's input); None
    when the model names none. Files written before `with_architecture` held num_frames in
    both places, the same value."""
    return {**self.vivit, 'num_frames': self.num_frames} if self.vivit else None

  def write(self, path: str) -> str:
    """Writes the clip config to `path` (any tf.io.gfile URI; its folder made if missing)."""
    remote_files.write_text(path, json.dumps(self.to_dict(), indent=1))
    return path

  @property
  def positive_index(self) -> Optional[int]:
    """Label of the positive class: the named one, else label 1 of a binary set."""
    if self.positive_class in self.class_names:
      return self.class_names.index(self.positive_class)
    return 1 if len(self.class_names) == 2 else None

  def positive_score(self, probabilities: Sequence[float]) -> float:
    """P(positive class) from a serving output row ([1] binary, [K] multi-class); for a
    multi-class set without a positive class, 1 − P(first class). The one positive-class
    score of predict, the timeline, watch and the review page."""
    probs = class_probabilities(probabilities)
    index = self.positive_index if len(probabilities) > 1 else 1
    return probs[index] if index is not None else 1.0 - probs[0]


def class_probabilities(row: Sequence[float]) -> List[float]:
  """A serving output row → P(label i) for every label ([1]: a binary model's P(label 1))."""
  return [1.0 - float(row[0]), float(row[0])] if len(row) == 1 else [float(p) for p in row]


def predicted_label(row: Sequence[float]) -> int:
  """The most probable label of a serving output row (the first one on a tie)."""
  probs = class_probabilities(row)
  return max(range(len(probs)), key=lambda i: probs[i])


def clip_config_path(model: str) -> str:
  """Where a model's clip config is: <SavedModel>/assets.extra/clip_config.json, or beside a
  TFLite file (`vivit-tfx export`: <name>.tflite → <name>.clip_config.json)."""
  if model.endswith(TFLITE_SUFFIX):
    return model[:-len(TFLITE_SUFFIX)] + TFLITE_CLIP_CONFIG_SUFFIX
  return os.path.join(model, CLIP_CONFIG_FILE)


def clip_config_of(model_dir: str) -> ModelClipConfig:
  """The clip config of an exported model folder (`Format-Serving` or a pushed version), or
  of a `.tflite` model (`clip_config_path`)."""
  path = clip_config_path(model_dir)
  if not remote_files.exists(path):
    if model_dir.endswith(TFLITE_SUFFIX):
      raise NoModelError(f'{model_dir}: no {os.path.basename(path)} beside it (the clip config '
                         '`vivit-tfx export` writes with each TFLite model)')
    raise NoModelError(f'{model_dir} has no {CLIP_CONFIG_FILE}: not exported by this project')
  return ModelClipConfig.from_dict(remote_files.read_json(path))
