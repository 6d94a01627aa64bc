"""Trainer's `run_fn`: ViViT trained on clips decoded by the Transform graph, then exported
with `serving_default` (serialised raw tf.Examples → probabilities) and `transform_features`."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import augment, distribution, features, training
from models.vivit import build_vivit
from models.vivit_config import ViViTConfig

SERVING_OUTPUT = 'probabilities'
WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# How clips must be sampled for this model (read by `vivit-tfx predict`).
CLIP_CONFIG_FILE = os.path.join('assets.extra', 'clip_config.json')
# Keras weights, so tools (attention maps) can rebuild the Keras model from the ViViTConfig.
WEIGHTS_FILE = os.path.join('assets.extra', 'vivit.weights.h5')


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, n_classes: int,
             training_mode: bool) -> tf.data.Dataset:
  """Raw JPEG clip records → batches of (normalised clips [B, T, H, W, 3], labels)."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL,
                                     shuffle=training_mode, shuffle_buffer_size=256),
      tf_transform_output.raw_metadata.schema)
  tft_layer = tf_transform_output.transform_features_layer()

  def _to_clips(raw, label):
    clips = tft_layer({features.FRAMES: raw[features.FRAMES]})[features.CLIP_XF]
    if training_mode:
      clips = augment.augment(clips)
    label = tf.reshape(label, [-1, 1])
    return clips, (tf.cast(label, tf.float32) if n_classes == 2 else label)

  return dataset.map(_to_clips, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains ViViT from `custom_config['vivit']` (a ViViTConfig dict) and exports it."""
  custom = fn_args.custom_config or {}
  config = ViViTConfig.from_dict(custom['vivit'])
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  strategy = distribution.strategy_for(custom.get('distribution', 'auto'),
                                       custom.get('tpu_address', ''))
  batch_size = config.batch_size * strategy.num_replicas_in_sync
  logging.info('ViViT %s on %s with %d replica(s), global batch %d', config.variant,
               type(strategy).__name__, strategy.num_replicas_in_sync, batch_size)
  train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size,
                   config.n_classes, training_mode=True)
  evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                        batch_size, config.n_classes, training_mode=False)
  steps_per_epoch = max(1, min(int(custom.get('steps_per_epoch', 100)), fn_args.train_steps))
  epochs = max(1, fn_args.train_steps // steps_per_epoch)
  with strategy.scope():
    model = build_vivit(config)
    training.compile_model(model, config, total_steps=epochs * steps_per_epoch)
  model.fit(train, steps_per_epoch=steps_per_epoch, epochs=epochs, validation_data=evaluation,
            validation_steps=max(1, fn_args.eval_steps), verbose=2,
            callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir,
                                                   update_freq='epoch')])
  signatures = serving_signatures(model, tf_transform_output, config.n_classes)
  tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures)
  write_warmup_requests(fn_args.serving_model_dir, _sample_records(fn_args.eval_files, 4))
  with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, CLIP_CONFIG_FILE), 'w') as f:
    f.write(json.dumps({**custom.get('clip', {}), 'class_names': list(features.CLASS_NAMES),
                        'vivit': config.to_dict()}, indent=1))
  local_weights = os.path.join(fn_args.model_run_dir, 'vivit.weights.h5')
  model.save_weights(local_weights)  # h5 needs a local file; copy for remote model dirs
  tf.io.gfile.copy(local_weights, os.path.join(fn_args.serving_model_dir, WEIGHTS_FILE),
                   overwrite=True)
