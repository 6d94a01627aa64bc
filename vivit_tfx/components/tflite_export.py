"""Pipeline step after the Pusher (`run --tflite`): the pushed model as TFLite models, beside it.

Inputs: the Trainer's Model (converted: the SavedModel the Evaluator blessed), the Pusher's
PushedModel (where it went) and the ExampleGen's Examples (int8 calibrates on their train
split). Output: a `TFLiteModel` artifact holding <float32|float16|int8>.tflite and each one's
clip config (`inference/tflite_export.py`), copied beside the pushed SavedModel as
`<serving_dir>/<model_name>/<version>.<name>.tflite` (and `.clip_config.json`), the way the
model card sits beside it. The version folder itself stays what the Pusher wrote (TF Serving
loads it; numbered folders only, so the files beside it are ignored there).

A separate step rather than files the Trainer writes into its Model: ML Metadata then records
the TFLite model as an artifact of its own whose execution consumed that very Model, its push
and the calibration examples, and nothing is converted for a model that is not pushed.
"""
import os
from typing import List, Tuple

import tensorflow as tf
from tfx import types
from tfx.dsl.component.experimental.annotations import (InputArtifact, OutputArtifact,
                                                       Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from vivit_tfx.data import drift_stats
from vivit_tfx.data.clip_config import (TFLITE_FILE_STEMS, TFLITE_QUANTIZATIONS,
                                        TFLITE_SUFFIX)


class TFLiteModel(types.Artifact):
  """TFLite models of one pushed model (<name>.tflite + <name>.clip_config.json each, and the
  pushed model's training split statistics, <name>.drift_reference.stats.pbtxt)."""
  TYPE_NAME = 'vivit_tfx.TFLiteModel'  # namespaced: Kubeflow's schema titles need the '.'


def pushed_path(destination: str, stem: str) -> str:
  """<serving_dir>/<model_name>/<version> → <serving_dir>/<model_name>/<version>.<stem>.tflite."""
  return f'{destination.rstrip("/")}.{stem}{TFLITE_SUFFIX}'


def parse_quantize(value: str) -> List[str]:
  """'float16,int8' → ['float16', 'int8'] (each one of TFLITE_QUANTIZATIONS)."""
  names = [q.strip() for q in value.split(',') if q.strip()]
  if not names or not set(names) <= set(TFLITE_QUANTIZATIONS):
    raise ValueError(f'--tflite {value!r}: a comma-separated list of '
                     f'{", ".join(TFLITE_QUANTIZATIONS)}')
  return list(dict.fromkeys(names))


def train_files(examples: types.Artifact) -> Tuple[List[str], str]:
  """(TFRecord files of the Examples artifact's train split, their compression)."""
  files = sorted(tf.io.gfile.glob(os.path.join(
      artifact_utils.get_split_uri([examples], 'train'), '*')))
  return files, 'GZIP' if files and files[0].endswith('.gz') else ''


@component
def TFLiteExport(  # pylint: disable=invalid-name
    model: InputArtifact[standard_artifacts.Model],
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    examples: InputArtifact[standard_artifacts.Examples],
    tflite_model: OutputArtifact[TFLiteModel],
    quantize: Parameter[str] = 'int8',
    calibration_clips: Parameter[int] = 64,  # tflite_export.CALIBRATION_CLIPS
    code: Parameter[str] = ''):
  """Converts the pushed model to each of `quantize` (comma-separated: none, float16, int8)
  into `tflite_model` and beside the pushed version; nothing when the Pusher did not push.
  An existing file beside the version is never replaced (the step fails naming it).

  `code`: the hash of this module's code, so an edit re-executes the step (cache key only).
  """
  # local: Keras and the model code, needed only when the step runs (not to build the pipeline)
  from vivit_tfx.inference import tflite_export  # pylint: disable=g-import-not-at-top
  del code
  quantizations = parse_quantize(quantize)
  pushed = bool(pushed_model.get_int_custom_property('pushed'))
  tflite_model.set_int_custom_property('pushed', int(pushed))
  if not pushed:
    return
  destination = pushed_model.get_string_custom_property('pushed_destination')
  stems = [TFLITE_FILE_STEMS[q] for q in quantizations]
  targets = [p for s in stems for p in drift_stats.tflite_model_files(pushed_path(destination, s))]
  taken = [p for p in targets if tf.io.gfile.exists(p)]
  if taken:
    raise FileExistsError(f'{taken[0]} exists: left as it is (the TFLite models of '
                          f'{destination} are not written)')
  function = tflite_export.clip_function(path_utils.serving_model_dir(model.uri))
  records = (tflite_export.read_records(*train_files(examples))[0]
             if 'int8' in quantizations else [])
  for q, stem in zip(quantizations, stems):
    # the clip config names the pushed SavedModel (the Model artifact's copy) as its source
    done = tflite_export.write_quantized(
        function, q, os.path.join(tflite_model.uri, stem + TFLITE_SUFFIX), destination,
        records, calibration_clips, {'examples': examples.uri}, {'model': model.uri})
    beside = drift_stats.tflite_model_files(pushed_path(destination, stem))
    for source, target in zip(done.files(), beside):
      if source:  # no drift statistics when the SavedModel carries none
        tf.io.gfile.copy(source, target, overwrite=False)
  tflite_model.set_string_custom_property('quantize', ','.join(quantizations))
  tflite_model.set_string_custom_property('pushed_destination', destination)
  tflite_model.set_string_custom_property(
      'pushed_models', ','.join(pushed_path(destination, s) for s in stems))
