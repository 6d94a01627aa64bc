"""`vivit-tfx predict`: classify video files with a pushed model (TF Serving layout).

Clips are sampled and JPEG-encoded exactly as ingestion does (same code, same T and frame
size, read from the model's assets.extra/clip_config.json), then sent through the model's
`serving_default` signature as serialised tf.Examples.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from typing import List, Optional

from vivit_tfx.components import ingest, remote_files
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


def clip_config_of(model_dir: str) -> ingest.ClipConfig:
  from vivit_tfx.models.export import CLIP_CONFIG_FILE  # pylint: disable=g-import-not-at-top
  path = os.path.join(model_dir, CLIP_CONFIG_FILE)
  if not remote_files.exists(path):
    raise NoModelError(f'{model_dir} has no {CLIP_CONFIG_FILE}: not exported by this project')
  clip = remote_files.read_json(path)
  return ingest.ClipConfig(num_frames=clip['num_frames'], frame_size=tuple(clip['frame_size']))


@dataclasses.dataclass
class Prediction:
  path: str
  label: Optional[str] = None
  probability: Optional[float] = None  # of the predicted label
  violence_probability: Optional[float] = None
  error: Optional[str] = None

  def to_text(self) -> str:
    if self.error:
      return f'{self.path}: error: {self.error}'
    return (f'{self.path}: {self.label} (p={self.probability:.3f}, '
            f'p_violence={self.violence_probability:.3f})')


def serialized_clip(path: str, clip: ingest.ClipConfig) -> bytes:
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
      if len(p) == 1:  # binary: p = P(Violence)
        r.violence_probability = float(p[0])
        index = int(p[0] >= 0.5)
        r.probability = float(p[0] if index else 1 - p[0])
      else:
        index = int(p.argmax())
        r.probability = float(p[index])
        r.violence_probability = float(p[CLASS_NAMES.index('Violence')])
      r.label = CLASS_NAMES[index] if index < len(CLASS_NAMES) else str(index)
  return results


def rest_request(path: str, model_dir: str) -> dict:
  """The TF Serving REST `:predict` body for one video (base64 serialised tf.Example)."""
  example = serialized_clip(path, clip_config_of(model_dir))
  return {'signature_name': 'serving_default',
          'instances': [{'examples': {'b64': base64.b64encode(example).decode('ascii')}}]}
