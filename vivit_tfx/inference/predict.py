"""`vivit-tfx predict`: classify video files with a pushed model (TF Serving layout).

Clips are sampled and JPEG-encoded exactly as ingestion does (same code, same T and frame
size, read from the model's assets.extra/clip_config.json), then sent through the model's
`serving_default` signature as serialised tf.Examples.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import os
from typing import Dict, List, Optional, Sequence, Tuple

from vivit_tfx.data import ingest, remote_files, sampling
from vivit_tfx.data.clip_config import (ModelClipConfig, NoModelError,  # pylint: disable=unused-import
                                        class_probabilities, clip_config_of, predicted_label)


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


def _saved_model_stamp(model_dir: str) -> Tuple[int, ...]:
  """Modification times of `model_dir`'s graph and variable index (0 when absent): a model
  written again at the same path, its variables included, is loaded again."""
  # local: TensorFlow (see `predict`).
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = [os.path.join(model_dir, *p) for p in (('saved_model.pb',),
                                                  ('variables', 'variables.index'))]
  return tuple(tf.io.gfile.stat(f).mtime_nsec if tf.io.gfile.exists(f) else 0 for f in files)


# One model at a time: a server that moves to a new version lets the old one go.
@functools.lru_cache(maxsize=1)
def _load_saved_model(model_dir: str, stamp: Tuple[int, ...]):  # pylint: disable=unused-argument
  # local: TensorFlow (see `predict`).
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.saved_model.load(model_dir)


def saved_model(model_dir: str):
  """The SavedModel at `model_dir`, loaded once per process while it is unchanged
  (`_saved_model_stamp`): a review on `serve`'s page runs predict, the timeline and the attention map on
  the same model, each of which loaded it (seconds each) on every review."""
  return _load_saved_model(model_dir, _saved_model_stamp(model_dir))


@functools.lru_cache(maxsize=1)
def _load_keras_model(model_dir: str, stamp: Tuple[int, ...]):  # pylint: disable=unused-argument
  # local: models/ imports TensorFlow (see `predict`).
  from vivit_tfx.models.trainer import export  # pylint: disable=g-import-not-at-top
  return export.load_keras_model(model_dir)


def keras_model(model_dir: str):
  """The Keras ViViT of a pushed model, rebuilt from its config and SavedModel variables once
  per process while the model is unchanged (the attention map's input), as `saved_model`."""
  return _load_keras_model(model_dir, _saved_model_stamp(model_dir))


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
  """Predictions in input order; a bad file gets an error entry, the others still run.
  `model_dir`: a SavedModel, or a `.tflite` model (`vivit-tfx export`), scored alike
  (`model_scorer`: K views of each video's record averaged)."""
  # local: TensorFlow (~2.5 s) is imported where a model is loaded, so that inference/
  # modules load without it: the CLI refuses bad inputs and options first. (model_scorer
  # also imports this module.)
  from vivit_tfx.inference import model_scorer  # pylint: disable=g-import-not-at-top
  scorer = model_scorer.load_scorer(model_dir)
  clip = scorer.clip
  results = [Prediction(p) for p in paths]
  ready = []
  for r in results:
    read, reason = ingest.read_jpegs(r.path, clip)
    if read is None:
      r.error = reason
    else:
      ready.append((r, read[0]))  # its record's N JPEG frame slots
  for start in range(0, len(ready), batch_size):
    batch = ready[start:start + batch_size]
    for (r, _), p in zip(batch, scorer.score_records([j for _, j in batch])):
      r.fill(p, clip)
  return results


def rest_request(path: str, model_dir: str) -> dict:
  """The TF Serving REST `:predict` body for one video (base64 serialised tf.Example)."""
  example = serialized_clip(path, clip_config_of(model_dir))
  return {'signature_name': 'serving_default',
          'instances': [{'examples': {'b64': base64.b64encode(example).decode('ascii')}}]}
