"""Trainer's `run_fn`: ViViT trained on clips decoded by the Transform graph, then exported
(`models/export.py`) with `serving_default` (serialised raw tf.Examples → probabilities) and
`transform_features`."""
from __future__ import annotations

import os
from typing import List

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from vivit_tfx.models import (augment, clip_views, distribution, export, features, training,
                              videomae_pretrain)
from vivit_tfx.models.vivit import build_vivit
from vivit_tfx.models.vivit_config import ViViTConfig


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, n_classes: int,
             training_mode: bool, num_frames: int = 0) -> tf.data.Dataset:
  """Raw JPEG clip records → batches of (normalised clips [B, T, H, W, 3], labels).

  Training: shuffled, repeated forever, one clip at a random position of each video per visit
  (`clip_views`). Validation: one pass over the whole split in its (ingest-shuffled) record
  order, the central clip of each video, so every epoch's validation covers every class.
  """
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL,
                                     shuffle=training_mode, shuffle_buffer_size=256,
                                     num_epochs=None if training_mode else 1),
      tf_transform_output.raw_metadata.schema)
  tft_layer = tf_transform_output.transform_features_layer()
  num_frames = num_frames or tf_transform_output.raw_feature_spec()[features.FRAMES].shape[0]

  def _to_clips(raw, label):
    clips = frames_to_clips(raw[features.FRAMES], tft_layer, num_frames, training_mode)
    label = tf.reshape(label, [-1, 1])
    return clips, (tf.cast(label, tf.float32) if n_classes == 2 else label)

  return dataset.map(_to_clips, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def frames_to_clips(frames: tf.Tensor, tft_layer, num_frames: int,
                    training_mode: bool) -> tf.Tensor:
  """JPEG frame slots [B, N] → normalised clips [B, T, H, W, 3]: training, a random clip of
  each video, augmented; otherwise the central clip (the Transform graph's)."""
  if training_mode:
    frames = clip_views.random_clip_records(frames, num_frames)
  clips = tft_layer({features.FRAMES: frames})[features.CLIP_XF]  # [B, T, H, W, 3]
  return augment.augment(clips) if training_mode else clips


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains ViViT from `custom_config['vivit']` (a ViViTConfig dict) and exports it.

  Resumes from the newest checkpoint in `<model_run_dir>/checkpoints` when the same
  execution is restarted (e.g. a preempted pod). Under multi-worker training only the chief
  writes the SavedModel, warm-up requests, clip config and TensorBoard logs.
  """
  custom = fn_args.custom_config or {}
  config = ViViTConfig.from_dict(custom['vivit'])
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  strategy = distribution.strategy_for(custom.get('distribution', 'auto'),
                                       custom.get('tpu_address', ''))
  chief, worker_id = distribution.is_chief(strategy)
  replicas = strategy.num_replicas_in_sync
  batch_size = config.batch_size * replicas
  logging.info('ViViT %s on %s with %d replica(s): %d clips per step, %d per update '
               '(%d accumulation steps), precision %s, XLA %s', config.variant,
               type(strategy).__name__, replicas, batch_size,
               batch_size * config.accumulation_steps, config.accumulation_steps,
               config.precision, config.jit_compile)
  train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size,
                   config.n_classes, training_mode=True, num_frames=config.num_frames)
  evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                        batch_size, config.n_classes, training_mode=False)
  steps_per_epoch = max(1, min(int(custom.get('steps_per_epoch', 100)), fn_args.train_steps))
  total_steps = max(1, fn_args.train_steps // steps_per_epoch) * steps_per_epoch
  with strategy.scope():
    model = build_vivit(config)  # from config.init_checkpoint when one is given
    if fn_args.base_model:  # the pre-training Trainer's encoder (pipeline --pretrain)
      model.init_source = videomae_pretrain.load_encoder(model, fn_args.base_model)
    training.compile_model(model, config, total_steps=total_steps)
  checkpoint = training.TrainingCheckpoint(
      model, os.path.join(fn_args.model_run_dir, 'checkpoints'),
      config.checkpoint_steps or steps_per_epoch, is_chief=chief, worker_id=worker_id)
  distribution.prepare_multi_worker_fit(model, strategy, train)
  logs = [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq='epoch')]
  training.fit_resumable(model, train, steps_per_epoch, total_steps, checkpoint,
                         validation_data=evaluation,  # the whole eval split (input_fn)
                         callbacks=logs if chief else [])
  if chief:
    export.export(model, config, tf_transform_output, fn_args.serving_model_dir,
                  custom.get('clip', {}), model.init_source)
