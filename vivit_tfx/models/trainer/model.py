"""Trainer's `run_fn`: ViViT trained on clips decoded by the Transform graph, then exported
(`models/trainer/export.py`) with `serving_default` (serialised raw tf.Examples →
probabilities) and
`transform_features`."""
from __future__ import annotations

from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from vivit_tfx.data import features, ingest
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.models.trainer import (augment, clip_views, export, fixmatch, self_training,
                                      training)
from vivit_tfx.models.trainer.job import TrainerJob
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.videomae import videomae_pretrain


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, n_classes: int,
             training_mode: bool, num_frames: int = 0) -> tf.data.Dataset:
  """Raw JPEG clip records → batches of (normalised clips [B, T, H, W, 3], labels).

  Training: shuffled, repeated forever, one clip at a random position of each video per visit
  (`clip_views`). Validation: one pass over the split in its (ingest-shuffled) record order,
  the central clip of each video (run_fn repeats it and validates on --eval-steps batches
  per epoch, successive epochs on successive batches).
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


def data_class_names(summary_path: str, n_classes: int) -> List[str]:
  """The class names of the ingest summary beside the clips (read where the Trainer runs, not
  where the pipeline was compiled), or [] when there is none; a class count other than the
  model's `n_classes` is refused in one line."""
  if not summary_path or not tf.io.gfile.exists(summary_path):
    return []
  names = list(ingest.IngestSummary.read(summary_path).classes)
  if names and len(names) != n_classes:
    raise ValueError(f'{summary_path}: the data has {len(names)} classes ({", ".join(names)}); '
                     f'the pipeline was compiled for {n_classes}: compile it again for this data')
  return names


# Not converted by AutoGraph when a tf.data map calls it: it has no tensor-dependent Python
# control flow, and converting the Transform layer's Keras call tree took seconds per Trainer.
@tf.autograph.experimental.do_not_convert
def frames_to_clips(frames: tf.Tensor, tft_layer, num_frames: int,
                    training_mode: bool) -> tf.Tensor:
  """JPEG frame slots [B, N] → normalised clips [B, T, H, W, 3]: training, a random clip of
  each video, augmented; otherwise the central clip (the Transform graph's)."""
  if training_mode:
    return augment.augment(random_clips(frames, tft_layer, num_frames))
  return tft_layer({features.FRAMES: frames})[features.CLIP_XF]  # [B, T, H, W, 3]


@tf.autograph.experimental.do_not_convert
def random_clips(frames: tf.Tensor, tft_layer, num_frames: int) -> tf.Tensor:
  """JPEG frame slots [B, N] → a random clip of each video, normalised, not augmented
  [B, T, H, W, 3]."""
  frames = clip_views.random_clip_records(frames, num_frames)
  return tft_layer({features.FRAMES: frames})[features.CLIP_XF]


def unlabeled_input_fn(pattern: str, tf_transform_output: tft.TFTransformOutput,
                       batch_size: int, num_frames: int, views=augment.augment
                       ) -> tf.data.Dataset:
  """Ingested clip records matching `pattern` (labels ignored) → batches of `views(clips)`,
  forever: `clips` a random clip of each video [B, T, H, W, 3] (`random_clips`), `views` the
  training augmentation by default (VideoMAE's footage), FixMatch's weak and strong pair."""
  spec = {features.FRAMES: tf_transform_output.raw_feature_spec()[features.FRAMES]}
  tft_layer = tf_transform_output.transform_features_layer()
  files = tf.data.Dataset.list_files(pattern, shuffle=True).repeat()
  return (tf.data.TFRecordDataset(files).shuffle(256).batch(batch_size, drop_remainder=True)
          .map(lambda r: views(random_clips(tf.io.parse_example(r, spec)[features.FRAMES],
                                            tft_layer, num_frames)),
               num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def self_train(model, fit, labelled: tf.data.Dataset, unlabeled: dict, directory: str,
               teacher_steps: int, tf_transform_output: tft.TFTransformOutput,
               config: ViViTConfig, clip: ModelClipConfig,
               plan: self_training.SelfTrainingConfig,
               batch_size: int, record_dir: str = '') -> tf.data.Dataset:
  """`models.self_training`'s teacher phase (`teacher_steps`) and pseudo-labelling; returns
  the student's training data (labelled and pseudo-labelled batches). The pseudo-labels are
  recorded in `record_dir` (the chief's model_run folder)."""
  print(f'Trainer: self-training: {teacher_steps} teacher steps on the labels, then '
        f'pseudo-labels for {unlabeled["videos"]} unlabelled videos', flush=True)
  fit(labelled, teacher_steps)
  pseudo = self_training.pseudo_label(
      model, unlabeled, directory, tf_transform_output, config.num_frames,
      max(1, clip.num_views), plan, list(clip.class_names))
  if record_dir:
    self_training.save_record(pseudo, record_dir)
  if not pseudo['chosen']:
    print('Trainer: no unlabelled video reached the threshold: the student trains on the '
          'labels alone', flush=True)
    return labelled
  return self_training.mixed(labelled, self_training.pseudo_labelled_clips(
      pseudo['path'], tf_transform_output, batch_size, config.num_frames, config.n_classes,
      frames_to_clips), plan.pseudo_share, plan.student_noise)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains ViViT from `custom_config['vivit']` (a ViViTConfig dict) and exports it.

  Resumes from the newest checkpoint in `job.resume_dir` when the same job is started again (a
  preempted pod, or a run killed during training and started again). Under multi-worker
  training only the chief writes the SavedModel, warm-up requests, clip config and logs.
  """
  config = training.precision_for_this_machine(
      ViViTConfig.from_dict(fn_args.custom_config['vivit']), 'Trainer')
  job = TrainerJob(fn_args, 'Trainer')
  custom = job.custom
  clip = ModelClipConfig.from_dict(custom.get('clip', {}))
  names = data_class_names(custom.get('clips_summary', ''), config.n_classes)
  if names and tuple(names) != clip.class_names:
    print(f'Trainer: classes from the data: {", ".join(names)}', flush=True)
    clip = clip.with_classes(names)
  batch_size = config.batch_size * job.replicas  # one micro-batch of every replica
  k = config.accumulation_steps
  print(f'Trainer: ViViT {config.variant} on {job.where()}: {batch_size * k} clips per step '
        f'({k} accumulation step(s) of {batch_size}), precision {config.precision}, XLA '
        f'{config.jit_compile}', flush=True)
  train = input_fn(fn_args.train_files, fn_args.data_accessor, job.transform,
                   batch_size * k, config.n_classes, training_mode=True,
                   num_frames=config.num_frames)
  evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, job.transform,
                        batch_size, config.n_classes, training_mode=False).repeat()
  unlabeled = custom.get('unlabeled') or {}
  plan = (self_training.SelfTrainingConfig.from_dict(custom['self_training'])
          if custom.get('self_training') and unlabeled.get('pattern') else None)
  # Pseudo-labels: the teacher's and the student's phases each get a warm-up and cosine decay.
  cycles = plan.cycles(job.total_steps) if plan else ()
  with job.strategy.scope():
    # From config.init_checkpoint when one is given; a Hugging Face head is kept when its
    # labels are the run's classes.
    model = initialised_vivit(config, classes=list(clip.class_names))
    if fn_args.base_model:  # the pre-training Trainer's encoder (pipeline --pretrain)
      model.init_source = videomae_pretrain.load_encoder(model, fn_args.base_model)
    training.compile_model(model, config, total_steps=job.total_steps, cycles=cycles,
                           objective=fixmatch.objective(plan) if plan and plan.fixmatch
                           else None)
  # The student's start when it does not continue from the teacher: these weights.
  initial = (model.get_weights() if plan and plan.restarts_student(bool(fn_args.base_model))
             else None)
  checkpoint = job.resumable(model, train, config.checkpoint_steps)
  logs = job.logs()
  fit = lambda data, steps: job.fit(model, data, evaluation, checkpoint, steps, logs)
  if plan and plan.fixmatch:
    print(f'Trainer: FixMatch on {unlabeled["videos"]} unlabelled videos: '
          f'{plan.unlabeled_ratio * batch_size * k} unlabelled clips per step, pseudo-labels '
          f'at probability ≥ {plan.threshold}', flush=True)
    training.build_loss_and_metrics(model, train)
    train = fixmatch.batches(train, unlabeled_input_fn(
        unlabeled['pattern'], job.transform, plan.unlabeled_ratio * batch_size * k,
        config.num_frames, fixmatch.views(plan)))
  elif plan:
    train = self_train(model, fit, train, unlabeled, checkpoint.directory, cycles[0],
                       job.transform, config, clip, plan, batch_size * k,
                       fn_args.model_run_dir if job.chief else '')
    if initial is not None and int(checkpoint.step) == cycles[0]:  # not in a resumed student
      source = ', '.join(f'{k} {v}' for k, v in model.init_source.items())
      print(f'Trainer: the student starts from the run\'s initial weights '
            f'({source or "a fresh initialisation"}) with a fresh optimizer', flush=True)
      self_training.restart_student(model, initial)
  fit(train, job.total_steps)
  if job.chief:
    export.export(model, config, job.transform, fn_args.serving_model_dir, clip,
                  model.init_source, fn_args.train_files)
    job.finish()
