"""`vivit-tfx predict`: classify video files with a pushed model (TF Serving layout).

Clips are sampled and JPEG-encoded exactly as ingestion does (same code, same T and frame
size, read from the model's assets.extra/clip_config.json), then sent through the model's
`serving_default` signature as serialised tf.Examples.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

from vivit_tfx.components import ingest, remote_files, sampling
# Only for models exported before class names were recorded (the RLVS layout's classes).
from vivit_tfx.models.features import CLASS_NAMES


class NoModelError(ValueError):
  pass


def newest_version(serving_dir: str, model_name: str) -> str:
  """<serving_dir>/<model_name>/<newest numeric version>/ (what TF Serving would load); any
  URI tf.io.gfile reads (gs://, s3://, …)."""
  base = os.path.join(serving_dir, model_name)
  versions = sorted((int(v) for v in remote_files.listdir(base) if v.isdigit()),
                    reverse=True) if remote_files.isdir(base) else []
  if not versions:
    raise NoModelError(f'no pushed model under {base} (run `vivit-tfx run` first, or pass '
                       '--model-dir)')
  return os.path.join(base, str(versions[0]))


@dataclasses.dataclass(frozen=True)
class ModelClipConfig(ingest.ClipConfig):
  """How a pushed model wants its clips (assets.extra/clip_config.json), with defaults: the
  ingestion ClipConfig (T, frame size, sampling rule) plus the classes and the views."""
  class_names: Tuple[str, ...] = CLASS_NAMES  # label order
  positive_class: str = ''  # binary sets: class_names[1]
  num_views: int = 1  # K clips per video averaged by serving_default
  sample_fps: float = 0.0  # a model whose clip config names no rate takes T over the video

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


def clip_config_of(model_dir: str) -> ModelClipConfig:
  from vivit_tfx.models.export import CLIP_CONFIG_FILE  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, CLIP_CONFIG_FILE)
  if not remote_files.exists(path):
    raise NoModelError(f'{model_dir} has no {CLIP_CONFIG_FILE}: not exported by this project')
  clip = remote_files.read_json(path)
  names = {f.name for f in dataclasses.fields(ModelClipConfig)}
  return ModelClipConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in clip.items() if k in names and v not in (None, '')})


@dataclasses.dataclass
class Prediction:
  path: str
  label: Optional[str] = None  # class name
  probability: Optional[float] = None  # of the predicted class
  probabilities: Optional[Dict[str, float]] = None  # per class name
  positive_class: Optional[str] = None
  positive_probability: Optional[float] = None
  error: Optional[str] = None

  def to_text(self) -> str:
    if self.error:
      return f'{self.path}: error: {self.error}'
    positive = (f', p_{self.positive_class}={self.positive_probability:.3f}'
                if self.positive_class else '')
    return f'{self.path}: {self.label} (p={self.probability:.3f}{positive})'

  def fill(self, row: Sequence[float], clip: ModelClipConfig) -> None:
    """Sets the fields from one serving output row."""
    names = clip.class_names
    probs, index = class_probabilities(row), predicted_label(row)
    self.label = names[index] if index < len(names) else str(index)
    self.probability = probs[index]
    self.probabilities = {(names[i] if i < len(names) else str(i)): p
                          for i, p in enumerate(probs)}
    if clip.positive_index is not None and clip.positive_index < len(names):
      self.positive_class = names[clip.positive_index]
      self.positive_probability = clip.positive_score(row)


def view_indices(info, clip: ModelClipConfig, num_views: Optional[int] = None) -> List[List[int]]:
  """Source frame indices of each of the K views serving_default scores for a video (the rule
  of evaluation, `sampling.stored_indices` then `sampling.view_indices`); K defaults to the
  model's `num_views` (1: the central clip that Transform and the attention maps use)."""
  stored = sampling.stored_indices(info.num_frames, info.fps, clip.num_frames, clip.sample_fps,
                                   clip.stored_frames)
  return sampling.view_indices(stored, clip.num_frames, num_views or clip.num_views)


def view_timestamps(info, clip: ModelClipConfig) -> List[List[float]]:
  """Seconds of the source frames of serving_default's K views of this video."""
  fps = info.fps or sampling.DEFAULT_FPS
  return [[round(i / fps, 4) for i in view] for view in view_indices(info, clip)]


def serialized_clip(path: str, clip: ModelClipConfig) -> bytes:
  """A video file → the serialised raw tf.Example the model's serving signature takes."""
  example, reason = ingest.read_example(path, os.path.basename(path), 0, clip)
  if example is None:
    raise ValueError(reason)
  return example.SerializeToString()


def predict(paths: List[str], model_dir: str, batch_size: int = 16) -> List[Prediction]:
  """Predictions in input order; a bad file gets an error entry, the others still run."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  clip = clip_config_of(model_dir)
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  results = [Prediction(p) for p in paths]
  ready = []
  for r in results:
    try:
      ready.append((r, serialized_clip(r.path, clip)))
    except ValueError as e:
      r.error = str(e)
  for start in range(0, len(ready), batch_size):
    batch = ready[start:start + batch_size]
    probs = serve(examples=tf.constant([b for _, b in batch]))['probabilities'].numpy()
    for (r, _), p in zip(batch, probs):
      r.fill(p, clip)
  return results


def rest_request(path: str, model_dir: str) -> dict:
  """The TF Serving REST `:predict` body for one video (base64 serialised tf.Example)."""
  example = serialized_clip(path, clip_config_of(model_dir))
  return {'signature_name': 'serving_default',
          'instances': [{'examples': {'b64': base64.b64encode(example).decode('ascii')}}]}
