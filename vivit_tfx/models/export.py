"""Export of the trained ViViT: the SavedModel's signatures, TF Serving warm-up requests, the
clip config that inference tools read, and the Keras weights (Trainer step, after `fit`)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.models import clip_views, features
from vivit_tfx.models.vivit_config import ViViTConfig

SERVING_OUTPUT = 'probabilities'
WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# How clips must be sampled for this model (read by `vivit-tfx predict`).
CLIP_CONFIG_FILE = os.path.join('assets.extra', 'clip_config.json')
# Keras weights, so tools (attention maps) can rebuild the Keras model from the ViViTConfig.
WEIGHTS_FILE = os.path.join('assets.extra', 'vivit.weights.h5')


def _probabilities(logits: tf.Tensor, n_classes: int) -> tf.Tensor:
  return tf.sigmoid(logits) if n_classes == 2 else tf.nn.softmax(logits)


def conform_frames(jpegs: tf.Tensor, size: Sequence[int], quality: int = 90) -> tf.Tensor:
  """JPEG frames of any size → JPEG frames of `size` (H, W), as ingestion makes them.

  A frame of another size is resized, aspect-preserving, to cover `size` (area averaging when
  shrinking, bilinear when enlarging, as `video_reader.resize_and_crop`), centre-cropped and
  re-encoded at the ingestion JPEG quality; frames already of `size` pass untouched.
  jpegs: [N] string → [N] string.
  """
  out_h, out_w = int(size[0]), int(size[1])

  def one(jpeg):
    shape = tf.image.extract_jpeg_shape(jpeg)  # [H, W, C] from the header, no decoding
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)

    def resized():
      image = tf.io.decode_jpeg(jpeg, channels=3)
      scale = tf.maximum(out_h / h, out_w / w)
      new_h = tf.maximum(out_h, tf.cast(tf.round(h * scale), tf.int32))
      new_w = tf.maximum(out_w, tf.cast(tf.round(w * scale), tf.int32))
      image = tf.cond(scale < 1.0,
                      lambda: tf.image.resize(image, [new_h, new_w], method='area'),
                      lambda: tf.image.resize(image, [new_h, new_w], method='bilinear'))
      top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
      image = image[top:top + out_h, left:left + out_w]
      image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
      return tf.io.encode_jpeg(image, quality=quality)

    same = tf.logical_and(tf.equal(shape[0], out_h), tf.equal(shape[1], out_w))
    return tf.cond(same, lambda: jpeg, resized)

  return tf.map_fn(one, jpegs, fn_output_signature=tf.TensorSpec([], tf.string))


def serving_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                       n_classes: int, clip: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """serving_default: examples → {'probabilities': [B, 1] (binary) or [B, K]}, the mean over
  the clip config's `num_views` evaluation views of each video (`clip_views`);
  transform_features: examples → transformed features (used by TFMA).

  serving_default checks its input: an empty batch gives an empty result; an example with
  more frames than a record holds (exactly T when the model takes one clip per video) is an
  InvalidArgumentError naming T; frames of another size than the clips' frame size are
  conformed as ingestion does (`conform_frames`).
  """
  model.tft_layer = tf_transform_output.transform_features_layer()  # tracked for export
  raw_spec = tf_transform_output.raw_feature_spec()
  stored = int(raw_spec[features.FRAMES].shape[0])  # N
  clip = clip or {}
  num_frames = int(clip.get('num_frames', stored))  # T
  num_views = max(1, int(clip.get('num_views', 1)))  # K
  frame_size = clip.get('frame_size')
  quality = int(clip.get('jpeg_quality', 90))
  num_outputs = 1 if n_classes == 2 else n_classes
  if stored == num_frames:
    allowed, expected = (num_frames, num_frames), f'exactly {num_frames} frames'
  else:
    allowed = (1, stored)
    expected = (f'1 to {stored} frames (clips of T = {num_frames} frames at '
                f'{clip.get("sample_fps")} fps)')

  def probabilities(examples):
    frames = tf.io.parse_example(
        examples, {features.FRAMES: tf.io.RaggedFeature(tf.string)})[features.FRAMES]
    counts = frames.row_lengths()  # [B]
    check = tf.debugging.Assert(
        tf.reduce_all((counts >= allowed[0]) & (counts <= allowed[1])),
        [f'serving_default: each example must hold {expected}; this model\'s T is '
         f'{num_frames}, got frame counts', counts], summarize=8)
    with tf.control_dependencies([check]):
      records = frames.to_tensor(default_value='', shape=[None, stored])  # [B, N]
    views = clip_views.gather_clips(
        records, clip_views.view_starts(clip_views.valid_counts(records), num_frames,
                                        num_views), num_frames)  # [B, K, T]
    views = tf.reshape(views, [-1, num_frames])  # [B*K, T]
    if frame_size:
      views = tf.reshape(conform_frames(tf.reshape(views, [-1]), frame_size, quality),
                         [-1, num_frames])
    clips = model.tft_layer({features.FRAMES: clip_views.as_records(views, stored)})[
        features.CLIP_XF]  # [B*K, T, H, W, 3]
    per_view = _probabilities(model(clips, training=False), n_classes)  # [B*K, P]
    return tf.reduce_mean(tf.reshape(per_view, [-1, num_views, num_outputs]), axis=1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(examples):
    empty = tf.zeros([0, num_outputs], tf.float32)
    out = tf.cond(tf.size(examples) > 0, lambda: probabilities(examples), lambda: empty)
    return {SERVING_OUTPUT: tf.ensure_shape(out, [None, num_outputs])}

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
  signatures = serving_signatures(model, tf_transform_output, config.n_classes, clip)
  tf.saved_model.save(model, serving_model_dir, signatures=signatures)
  write_warmup_requests(serving_model_dir, _sample_records(eval_files, 4))
  with tf.io.gfile.GFile(os.path.join(serving_model_dir, CLIP_CONFIG_FILE), 'w') as f:
    f.write(json.dumps({'class_names': list(features.CLASS_NAMES), **clip,
                        'vivit': config.to_dict()}, indent=1))
  local_weights = os.path.join(model_run_dir, 'vivit.weights.h5')
  model.save_weights(local_weights)  # h5 needs a local file; copy for remote model dirs
  tf.io.gfile.copy(local_weights, os.path.join(serving_model_dir, WEIGHTS_FILE), overwrite=True)
