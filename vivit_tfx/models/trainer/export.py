"""Export of the trained ViViT: the SavedModel's signatures, TF Serving warm-up requests from
synthetic clips, and the clip config that inference tools read (Trainer step, after `fit`).

The SavedModel holds the model, not the optimizer: a fresh float32 copy of the trained network
is exported, so the directory is about the parameters' bytes plus the graph. Tools that need
the Keras model (attention maps) rebuild it from the clip config and the SavedModel's own
variables (`load_keras_model`). Every path goes through tf.io.gfile (gs://, s3://, ram://).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from vivit_tfx.data.frames import resize_and_crop
from vivit_tfx.models.trainer import clip_views

from vivit_tfx.data import drift_stats, features
from vivit_tfx.data.clip_config import CLIP_CONFIG_FILE, ModelClipConfig, clip_config_of
from vivit_tfx.models.network.vivit import ViViT, build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig

SERVING_OUTPUT = 'probabilities'
WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
WARMUP_CLIPS = 4


def _probabilities(logits: tf.Tensor, n_classes: int) -> tf.Tensor:
  return tf.sigmoid(logits) if n_classes == 2 else tf.nn.softmax(logits)


def conform_frames(jpegs: tf.Tensor, size: Sequence[int], quality: int = 90) -> tf.Tensor:
  """JPEG frames of any size → JPEG frames of `size` (H, W), as ingestion makes them.

  A frame of another size is resized, aspect-preserving, to cover `size` and centre-cropped
  (`data.frames.resize_and_crop`), then re-encoded at the ingestion JPEG quality;
  frames already of `size` pass untouched. jpegs: [N] string → [N] string.
  """
  out_h, out_w = int(size[0]), int(size[1])

  def one(jpeg):
    shape = tf.image.extract_jpeg_shape(jpeg)  # [H, W, C] from the header, no decoding

    def resized():
      image = resize_and_crop(tf.io.decode_jpeg(jpeg, channels=3),
                                                  (out_h, out_w))  # [h, w, 3] 0..255
      return tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=quality)

    same = tf.logical_and(tf.equal(shape[0], out_h), tf.equal(shape[1], out_w))
    return tf.cond(same, lambda: jpeg, resized)

  return tf.map_fn(one, jpegs, fn_output_signature=tf.TensorSpec([], tf.string))


def serving_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                       n_classes: int, clip: Optional[ModelClipConfig] = None
                       ) -> Dict[str, Any]:
  """serving_default: examples → {'probabilities': [B, 1] (binary) or [B, K]}, the mean over
  the clip config's `num_views` evaluation views of each video (`clip_views`; one view when
  no record of the batch holds more than T frames, as `watch` and the timeline send);
  transform_features: examples → transformed features (used by TFMA). Without `clip`: T = N,
  one view, frames taken as they are.

  serving_default checks its input: an empty batch gives an empty result; an example with
  more frames than a record holds (exactly T when the model takes one clip per video) is an
  InvalidArgumentError naming T; frames of another size than the clips' frame size are
  conformed as ingestion does (`conform_frames`).
  """
  model.tft_layer = tf_transform_output.transform_features_layer()  # tracked for export
  raw_spec = tf_transform_output.raw_feature_spec()
  stored = int(raw_spec[features.FRAMES].shape[0])  # N
  num_frames = clip.num_frames if clip else stored  # T
  num_views = max(1, clip.num_views) if clip else 1  # K
  frame_size = clip.frame_size if clip else None
  quality = clip.jpeg_quality if clip else 90
  num_outputs = 1 if n_classes == 2 else n_classes
  if stored == num_frames:
    allowed, expected = (num_frames, num_frames), f'exactly {num_frames} frames'
  else:
    allowed = (1, stored)
    expected = (f'1 to {stored} frames (clips of T = {num_frames} frames at '
                f'{clip.sample_fps if clip else None} fps)')

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
    counts = clip_views.valid_counts(records)  # [B]
    # K views, or one when no record holds more than T frames (its K views are the same).
    views_k = tf.where(tf.reduce_max(counts) > num_frames, num_views, 1)
    views = clip_views.gather_clips(
        records, clip_views.view_starts(counts, num_frames, views_k), num_frames)  # [B, K, T]
    views = tf.reshape(views, [-1, num_frames])  # [B*K, T]
    if frame_size:
      views = tf.reshape(conform_frames(tf.reshape(views, [-1]), frame_size, quality),
                         [-1, num_frames])
    clips = model.tft_layer({features.FRAMES: clip_views.as_records(views, stored)})[
        features.CLIP_XF]  # [B*K, T, H, W, 3]
    per_view = _probabilities(model(clips, training=False), n_classes)  # [B*K, P]
    return tf.reduce_mean(tf.reshape(per_view, [-1, views_k, num_outputs]), axis=1)

  # No AutoGraph (no tensor-dependent Python control flow here): converting the model's and the
  # Transform layer's call trees took seconds per export.
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')],
               autograph=False)
  def serve(examples):
    empty = tf.zeros([0, num_outputs], tf.float32)
    out = tf.cond(tf.size(examples) > 0, lambda: probabilities(examples), lambda: empty)
    return {SERVING_OUTPUT: tf.ensure_shape(out, [None, num_outputs])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')],
               autograph=False)
  def transform_features(examples):
    return model.tft_layer(tf.io.parse_example(examples, raw_spec))

  return {'serving_default': serve, 'transform_features': transform_features}


def synthetic_examples(num_frames: int, frame_size, count: int = WARMUP_CLIPS) -> List[bytes]:
  """Serialised clip records of synthetic frames (a bright square moving over a gradient),
  never the user's data: what the warm-up requests send. frames: bytes[T] JPEG [H, W, 3]."""
  h, w = frame_size
  ys, xs = np.mgrid[0:h, 0:w]
  records = []
  for i in range(count):
    frames = []
    for t in range(num_frames):
      image = np.stack([xs * 255 // max(w - 1, 1), ys * 255 // max(h - 1, 1),
                        np.full_like(xs, 40 * i)], -1).astype(np.uint8)  # [H, W, 3]
      y0, x0 = (t * 3 + i * 5) % max(h // 2, 1), (t * 5 + i * 3) % max(w // 2, 1)
      image[y0:y0 + h // 4, x0:x0 + w // 4] = 255
      frames.append(tf.io.encode_jpeg(image).numpy())
    example = tf.train.Example(features=tf.train.Features(feature={
        features.FRAMES: tf.train.Feature(bytes_list=tf.train.BytesList(value=frames))}))
    records.append(example.SerializeToString())
  return records


def write_warmup_requests(export_dir: str, serialized_examples: List[bytes]) -> str:
  """Writes TF Serving warm-up requests (PredictionLog records) into the SavedModel."""
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:  # TFRecordWriter writes through tf.io.gfile
    for examples in (serialized_examples[:1], serialized_examples):  # batch 1 and batch N
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(signature_name='serving_default'))
      request.inputs['examples'].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def serving_copy(model: ViViT) -> ViViT:
  """A float32 ViViT with the trained weights and no optimizer (what gets exported)."""
  copy = build_vivit(model.config.replace(precision='float32'))
  copy.set_weights([np.asarray(w) for w in model.get_weights()])
  return copy


def export(model: ViViT, config: ViViTConfig, tf_transform_output: tft.TFTransformOutput,
           serving_model_dir: str, clip: ModelClipConfig,
           init_source: Optional[Dict[str, str]] = None,
           train_files: Sequence[str] = ()) -> None:
  """Writes the SavedModel (model only) with its signatures, synthetic warm-up requests and
  the clip config (with the checkpoint the model started from, for lineage); given the train
  split's record files (patterns), the drift reference too (`write_drift_reference`)."""
  exported = serving_copy(model)
  signatures = serving_signatures(exported, tf_transform_output, config.n_classes, clip)
  tf.saved_model.save(exported, serving_model_dir, signatures=signatures)
  write_warmup_requests(serving_model_dir, synthetic_examples(config.num_frames,
                                                             clip.frame_size))
  clip.with_provenance(**(init_source or {})).with_architecture(config.to_dict()).write(
      os.path.join(serving_model_dir, CLIP_CONFIG_FILE))
  if train_files:
    write_drift_reference(serving_model_dir, train_files, signatures['serving_default'])


def write_drift_reference(serving_model_dir: str, train_files: Sequence[str],
                          serve=None) -> None:
  """The train split's drift statistics carried by the model (`drift_stats.REFERENCE_FILE`):
  brightness, contrast, motion, orientation and the model's score (`serve`: its
  serving_default, default loaded from the folder) of up to `drift_stats.EXPORT_MAX_CLIPS`
  train clips, what `scan` and `watch` compare with. Without them the model still exports (one
  line says why)."""
  try:
    path = drift_stats.write_model_reference(
        serving_model_dir, train_files, drift_stats.serving_score(serve) if serve else None)
  except (ValueError, OSError, tf.errors.OpError) as e:
    print(f'Trainer: no drift reference in the model: {str(e).splitlines()[0]}', flush=True)
    return
  print(f'Trainer: drift reference (the train split\'s statistics) in {path}', flush=True)


def _variable_at(model: keras.Model, key: str):
  """The model variable at a SavedModel checkpoint key ('encoder/blocks/0/mlp_in/_kernel/
  .ATTRIBUTES/VARIABLE_VALUE'), or None when the key is not the model's (e.g. tft_layer)."""
  node = model
  for part in key.split('/.ATTRIBUTES/')[0].split('/'):
    try:
      node = node[int(part)] if part.isdigit() else getattr(node, part)
    except (AttributeError, IndexError, TypeError):
      return None
  return node if hasattr(node, 'assign') and hasattr(node, 'path') else None  # a variable


def load_keras_model(model_dir: str) -> ViViT:
  """Rebuilds the exported Keras ViViT from its clip config and the SavedModel's variables."""
  architecture = clip_config_of(model_dir).architecture()
  if not architecture:
    raise ValueError(f'{model_dir}: its clip config names no ViViT architecture (\'vivit\')')
  config = ViViTConfig.from_dict(architecture).replace(precision='float32')
  model = build_vivit(config)
  reader = tf.compat.v1.train.NewCheckpointReader(
      os.path.join(model_dir, 'variables', 'variables'))
  loaded = set()
  for key in reader.get_variable_to_shape_map():
    variable = _variable_at(model, key)
    if variable is not None:
      variable.assign(reader.get_tensor(key))
      loaded.add(id(variable))
  missing = [v.path for v in model.weights if id(v) not in loaded]
  if missing:
    raise ValueError(f'{model_dir}: the SavedModel lacks {len(missing)} variables of its '
                     f'ViViT config, e.g. {missing[0]} (exported by another version?)')
  return model
