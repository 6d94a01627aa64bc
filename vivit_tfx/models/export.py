"""Export of the trained ViViT: the SavedModel's signatures, TF Serving warm-up requests, the
clip config that inference tools read, and the Keras weights (Trainer step, after `fit`)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import keras
import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.models import features
from vivit_tfx.models.vivit_config import ViViTConfig

SERVING_OUTPUT = 'probabilities'
WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# How clips must be sampled for this model (read by `vivit-tfx predict`).
CLIP_CONFIG_FILE = os.path.join('assets.extra', 'clip_config.json')
# Keras weights, so tools (attention maps) can rebuild the Keras model from the ViViTConfig.
WEIGHTS_FILE = os.path.join('assets.extra', 'vivit.weights.h5')


def _probabilities(logits: tf.Tensor, n_classes: int) -> tf.Tensor:
  return tf.sigmoid(logits) if n_classes == 2 else tf.nn.softmax(logits)


def serving_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                       n_classes: int) -> Dict[str, Any]:
  """serving_default: examples → {'probabilities': [B, 1] (binary) or [B, K]};
  transform_features: examples → transformed features (used by TFMA)."""
  model.tft_layer = tf_transform_output.transform_features_layer()  # tracked for export
  raw_spec = tf_transform_output.raw_feature_spec()
  serving_spec = {features.FRAMES: raw_spec[features.FRAMES]}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(examples):
    parsed = tf.io.parse_example(examples, serving_spec)
    clips = model.tft_layer(parsed)[features.CLIP_XF]
    return {SERVING_OUTPUT: _probabilities(model(clips, training=False), n_classes)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(examples):
    return model.tft_layer(tf.io.parse_example(examples, raw_spec))

  return {'serving_default': serve, 'transform_features': transform_features}


def write_warmup_requests(export_dir: str, serialized_examples: List[bytes]) -> str:
  """Writes TF Serving warm-up requests (PredictionLog records) into the SavedModel."""
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=g-import-not-at-top
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for examples in (serialized_examples[:1], serialized_examples):  # batch 1 and batch N
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(signature_name='serving_default'))
      request.inputs['examples'].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def _sample_records(file_pattern: List[str], count: int) -> List[bytes]:
  files = [f for p in file_pattern for f in tf.io.gfile.glob(p)]
  dataset = tf.data.TFRecordDataset(files, compression_type=_compression(files))
  return [r.numpy() for r in dataset.take(count)]


def _compression(files: List[str]) -> str:
  return 'GZIP' if files and files[0].endswith('.gz') else ''


def export(model: keras.Model, config: ViViTConfig, tf_transform_output: tft.TFTransformOutput,
           serving_model_dir: str, model_run_dir: str, eval_files: List[str],
           clip: Dict[str, Any]) -> None:
  """Writes the SavedModel with its signatures, warm-up requests, clip config and weights."""
  signatures = serving_signatures(model, tf_transform_output, config.n_classes)
  tf.saved_model.save(model, serving_model_dir, signatures=signatures)
  write_warmup_requests(serving_model_dir, _sample_records(eval_files, 4))
  with tf.io.gfile.GFile(os.path.join(serving_model_dir, CLIP_CONFIG_FILE), 'w') as f:
    f.write(json.dumps({**clip, 'class_names': list(features.CLASS_NAMES),
                        'vivit': config.to_dict()}, indent=1))
  local_weights = os.path.join(model_run_dir, 'vivit.weights.h5')
  model.save_weights(local_weights)  # h5 needs a local file; copy for remote model dirs
  tf.io.gfile.copy(local_weights, os.path.join(serving_model_dir, WEIGHTS_FILE), overwrite=True)
