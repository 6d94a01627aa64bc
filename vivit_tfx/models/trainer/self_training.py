"""Learning from unlabelled footage in the Trainer: the settings of both methods
(`SelfTrainingConfig`), and the 'pseudo_labels' method, the default. The other, 'fixmatch',
is `models/trainer/fixmatch.py`.

'pseudo_labels': Noisy Student (Xie et al., CVPR 2020) with FixMatch's confidence threshold
(Sohn et al., NeurIPS 2020), in one model and one run, each phase with its own learning-rate
cycle (warm-up and cosine decay to 0: the teacher that labels has converged, the student
learns afresh):
  1. teacher: the model trains on the labelled train split for `teacher_fraction` of the steps
     (by default the steps the labels alone would get; the student's come on top);
  2. labelling: it scores every unlabelled video as serving does (the K evaluation views'
     probabilities averaged) and keeps those it is sure of (top probability ≥ `threshold`),
     at most `max_ratio` per labelled training video of the class (the most confident first),
     so a teacher biased to one class cannot flood the other out;
  3. student: training continues on batches drawn from the labelled clips and, with
     probability `pseudo_share`, from the pseudo-labelled ones (noised as every training clip:
     random position, speed, crop and flip; with `student_noise`, also photometric noise),
     continuing from the teacher's weights, or (`student_start` 'initial', and 'auto' after
     pre-training) from the run's starting weights (the pre-trained encoder, or a fresh
     initialisation) with a fresh optimizer: Noisy Student's student, which has not
     memorised the labelled videos.
The pseudo-labels are written beside the resume checkpoints, so a run killed in step 3
continues with the same ones.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from vivit_tfx.data import features
from vivit_tfx.models.trainer import augment, clip_views

PSEUDO_RECORDS = 'pseudo_labels.tfrecord'
PSEUDO_SUMMARY = 'pseudo_labels.json'


METHODS = ('fixmatch', 'pseudo_labels')
# The settings only one method reads.
_FIXMATCH_ONLY = ('unlabeled_ratio', 'unlabeled_weight', 'strong_crop', 'strong_noise')
_PSEUDO_LABELS_ONLY = ('teacher_fraction', 'max_ratio', 'pseudo_share', 'student_noise',
                       'student_start')
STUDENT_STARTS = ('auto', 'teacher', 'initial')


def _not_read_by(method: str) -> Tuple[str, ...]:
  """The settings of the other method."""
  return _PSEUDO_LABELS_ONLY if method == 'fixmatch' else _FIXMATCH_ONLY


@dataclasses.dataclass
class SelfTrainingConfig:
  """How the unlabelled footage is used (PipelineConfig's --self-training-overrides):
  'pseudo_labels' (this module, the default: it measured best on the hard benchmark) or
  'fixmatch' (`models/trainer/fixmatch.py`)."""
  method: str = 'pseudo_labels'
  threshold: Optional[float] = None  # a video/clip counts when its top class probability
                                     # reaches this; None: 0.9 (pseudo_labels), 0.95 (fixmatch)
  # fixmatch
  unlabeled_ratio: int = 1         # unlabelled clips per labelled clip in every step (mu)
  unlabeled_weight: float = 1.0    # weight of the unlabelled term in the loss (lambda)
  strong_crop: float = 0.5         # the strong view's smallest crop (share of the side)
  strong_noise: float = 0.5        # the strong view's photometric noise (augment.strong)
  # pseudo_labels
  teacher_fraction: float = 0.5  # share of the training steps on the labels alone
  max_ratio: float = 3.0         # at most this many pseudo-labelled videos per labelled one
  pseudo_share: float = 0.5      # probability that a batch comes from pseudo-labelled clips
  student_noise: float = 0.0     # the student's photometric noise (augment.photometric_noise)
  student_start: str = 'auto'  # the student's weights: 'teacher' (the teacher's), 'initial'
                               # (the run's first: pre-trained or fresh; a fresh optimizer),
                               # 'auto' ('initial' from a pre-trained encoder, else 'teacher')

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'self-training method must be one of {METHODS}, got {self.method!r}')
    if self.student_start not in STUDENT_STARTS:
      raise ValueError(f'self-training student_start must be one of {STUDENT_STARTS}, got '
                       f'{self.student_start!r}')
    if self.threshold is None:
      self.threshold = 0.95 if self.fixmatch else 0.9
    if not 0.5 <= self.threshold < 1:
      raise ValueError(f'self-training threshold must be within [0.5, 1), got {self.threshold}')
    for name in ('student_noise', 'strong_noise'):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f'self-training {name} must be within [0, 1), got '
                         f'{getattr(self, name)}')
    for name in ('teacher_fraction', 'pseudo_share'):
      if not 0 < getattr(self, name) < 1:
        raise ValueError(f'self-training {name} must be within (0, 1), got '
                         f'{getattr(self, name)}')
    if not 0 < self.strong_crop <= 1:
      raise ValueError(f'self-training strong_crop must be within (0, 1], got '
                       f'{self.strong_crop}')
    if int(self.unlabeled_ratio) != self.unlabeled_ratio or self.unlabeled_ratio < 1:
      raise ValueError(f'self-training unlabeled_ratio must be a whole number ≥ 1, got '
                       f'{self.unlabeled_ratio}')
    for name in ('max_ratio', 'unlabeled_weight'):
      if getattr(self, name) <= 0:
        raise ValueError(f'self-training {name} must be positive, got {getattr(self, name)}')

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> 'SelfTrainingConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f'unknown self-training settings {unknown}; known: {sorted(known)}')
    method = d.get('method', cls.method)
    misplaced = sorted(set(d) & set(_not_read_by(method)))
    if misplaced:
      raise ValueError(f'self-training settings {misplaced} do not apply to method '
                       f'{method!r}')
    return cls(**d)

  def to_dict(self) -> Dict[str, Any]:
    """The method and the settings it reads (what `from_dict` takes back)."""
    skip = _not_read_by(self.method)
    return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

  def __str__(self) -> str:
    """The settings the method reads, e.g. `fixmatch (threshold 0.95, unlabeled_ratio 1, …)`."""
    return f'{self.method} (' + ', '.join(
        f'{k} {v}' for k, v in self.to_dict().items() if k != 'method') + ')'

  @property
  def fixmatch(self) -> bool:
    return self.method == 'fixmatch'

  def restarts_student(self, pretrained: bool) -> bool:
    """Whether the student starts from the run's initial weights: 'initial', or 'auto' when
    they are a pre-trained encoder's (measured better there, README: hard benchmark); a fresh
    initialisation under 'auto' was not measured, so the student continues from the teacher."""
    return not self.fixmatch and (self.student_start == 'initial' or
                                  (self.student_start == 'auto' and pretrained))

  def teacher_steps(self, total_steps: int) -> int:
    return min(total_steps - 1, max(1, round(total_steps * self.teacher_fraction)))

  def cycles(self, total_steps: int) -> Tuple[int, ...]:
    """The learning-rate cycles of a run of `total_steps`: pseudo-labels, (teacher, student)
    steps, each phase its own cycle, so the teacher that labels is a converged model and the
    student learns afresh; FixMatch, () (one cycle)."""
    if self.fixmatch:
      return ()
    teacher = self.teacher_steps(total_steps)
    return teacher, total_steps - teacher

  def total_steps(self, labelled_steps: int) -> int:
    """The run's steps when the labels alone would get `labelled_steps`: FixMatch, the same
    steps (each also learns from unlabelled clips); pseudo-labels, the teacher gets those and
    the student its share on top."""
    if self.fixmatch:
      return labelled_steps
    return max(2, round(labelled_steps / self.teacher_fraction))


def probabilities(logits: np.ndarray) -> np.ndarray:
  """[V, 1] binary or [V, C] logits → [V, C] class probabilities."""
  logits = np.asarray(logits, np.float64)
  if logits.shape[-1] == 1:
    p = 1 / (1 + np.exp(-logits[:, 0]))
    return np.stack([1 - p, p], -1)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def score_records(model, pattern: str, tf_transform_output: tft.TFTransformOutput,
                  num_frames: int, num_views: int, batch_size: int = 16
                  ) -> Tuple[List[bytes], np.ndarray]:
  """Every record matching `pattern` (file order) and its [V, C] class probabilities: the K
  evaluation views' probabilities averaged, as serving_default computes them."""
  spec = {features.FRAMES: tf_transform_output.raw_feature_spec()[features.FRAMES]}
  tft_layer = tf_transform_output.transform_features_layer()
  files = sorted(tf.io.gfile.glob(pattern))
  records, probs = [], []
  for batch in tf.data.TFRecordDataset(files).batch(batch_size):
    frames = tf.io.parse_example(batch, spec)[features.FRAMES]  # [B, N]
    views = clip_views.view_records(frames, num_frames, num_views)  # [B * K, N]
    clips = tft_layer({features.FRAMES: views})[features.CLIP_XF]  # [B * K, T, H, W, 3]
    # The model itself, not predict_on_batch: under MirroredStrategy that returned each
    # replica's rows again ([2 x B x K, 1] on two replicas).
    p = probabilities(model(clips, training=False).numpy())  # [B * K, C]
    probs.append(p.reshape(len(batch), num_views, -1).mean(1))
    records += list(batch.numpy())
  return records, (np.concatenate(probs) if probs else np.zeros((0, 2)))


def choose(probs: np.ndarray, labelled_per_class: float, config: SelfTrainingConfig
           ) -> Tuple[np.ndarray, np.ndarray]:
  """(indices, labels) of the videos to pseudo-label: top probability ≥ threshold, at most
  max_ratio x labelled_per_class per class, the most confident first."""
  labels, confidence = probs.argmax(-1), probs.max(-1)
  cap = max(1, int(round(config.max_ratio * labelled_per_class)))
  chosen = []
  for c in range(probs.shape[-1]):
    sure = np.flatnonzero((labels == c) & (confidence >= config.threshold))
    chosen += list(sure[np.argsort(-confidence[sure], kind='stable')][:cap])
  chosen = np.array(sorted(chosen), np.int64)
  return chosen, labels[chosen]


def source_path(record: bytes) -> str:
  value = tf.train.Example.FromString(record).features.feature[features.SOURCE_PATH]
  return value.bytes_list.value[0].decode() if value.bytes_list.value else ''


def relabel(record: bytes, label: int) -> bytes:
  example = tf.train.Example.FromString(record)
  example.features.feature[features.LABEL].int64_list.value[:] = [int(label)]
  return example.SerializeToString()


def write_pseudo_labels(directory: str, records: List[bytes], chosen: np.ndarray,
                        labels: np.ndarray, summary: Dict[str, Any]) -> str:
  """Writes the pseudo-labelled records (and a summary) into `directory`; returns the
  records' path. Written under a temporary name, then renamed: a kill leaves no half file."""
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, PSEUDO_RECORDS)
  with tf.io.TFRecordWriter(path + '.tmp') as writer:
    for i, label in zip(chosen, labels):
      writer.write(relabel(records[i], label))
  with tf.io.gfile.GFile(os.path.join(directory, PSEUDO_SUMMARY), 'w') as f:
    f.write(json.dumps(summary, indent=1))
  tf.io.gfile.rename(path + '.tmp', path, overwrite=True)
  return path


def read_summary(directory: str) -> Dict[str, Any]:
  path = os.path.join(directory, PSEUDO_SUMMARY)
  if not (tf.io.gfile.exists(path) and tf.io.gfile.exists(os.path.join(directory,
                                                                        PSEUDO_RECORDS))):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def pseudo_labelled_clips(path: str, tf_transform_output: tft.TFTransformOutput,
                          batch_size: int, num_frames: int, n_classes: int,
                          frames_to_clips) -> tf.data.Dataset:
  """Pseudo-labelled records → batches of (random augmented clips, labels), forever; labels
  shaped as the labelled input's ([B, 1] float binary, int otherwise)."""
  spec = {features.FRAMES: tf_transform_output.raw_feature_spec()[features.FRAMES],
          features.LABEL: tf.io.FixedLenFeature([], tf.int64)}
  tft_layer = tf_transform_output.transform_features_layer()

  def _to_clips(records):
    parsed = tf.io.parse_example(records, spec)
    clips = frames_to_clips(parsed[features.FRAMES], tft_layer, num_frames, True)
    label = tf.reshape(parsed[features.LABEL], [-1, 1])
    return clips, (tf.cast(label, tf.float32) if n_classes == 2 else label)

  return (tf.data.TFRecordDataset(path).repeat().shuffle(256)
          .batch(batch_size, drop_remainder=True)
          .map(_to_clips, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def mixed(labelled: tf.data.Dataset, pseudo: tf.data.Dataset, share: float,
          noise: float = 0.0) -> tf.data.Dataset:
  """Batches from `pseudo` with probability `share`, else from `labelled`, each noised by
  `augment.photometric_noise(noise)` (the student's noise; the teacher labelled clean clips)."""
  batches = tf.data.Dataset.sample_from_datasets([labelled, pseudo],
                                                 weights=[1 - share, share], seed=0)
  if noise <= 0:
    return batches
  return batches.map(lambda clips, labels: (augment.photometric_noise(clips, noise), labels),
                     num_parallel_calls=tf.data.AUTOTUNE)


def restart_student(model, weights: List[np.ndarray]) -> None:
  """`student_start` 'initial': the model's weights back to `weights` (taken before the teacher
  trained) and the optimizer's moments to zero; its step counter, which the learning-rate
  cycles read, runs on."""
  model.set_weights(weights)
  opt = getattr(model.optimizer, 'inner_optimizer', model.optimizer)  # under loss scaling
  keep = {id(opt.iterations), id(getattr(opt, '_learning_rate', None))}
  for variable in opt.variables:
    if id(variable) not in keep:
      variable.assign(tf.zeros_like(variable))


def save_record(summary: Dict[str, Any], directory: str) -> None:
  """The pseudo-labels (source path, class, probability of each chosen video) into the
  Trainer's model_run folder, kept with the run (the resume folder goes once trained)."""
  tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(os.path.join(directory, PSEUDO_SUMMARY), 'w') as f:
    f.write(json.dumps({k: v for k, v in summary.items() if k != 'path'}, indent=1))


def pseudo_label(model, unlabeled: Dict[str, Any], directory: str,
                 tf_transform_output: tft.TFTransformOutput, num_frames: int, num_views: int,
                 config: SelfTrainingConfig, class_names: List[str]) -> Dict[str, Any]:
  """Step 2: scores the unlabelled records, writes the chosen ones relabelled into
  `directory` (or reuses what a killed run wrote there); returns the summary with 'path'."""
  summary = read_summary(directory)
  if summary:
    print(f'Trainer: reusing the {summary["chosen"]} pseudo-labelled videos of the killed run',
          flush=True)
  else:
    records, probs = score_records(model, unlabeled['pattern'], tf_transform_output,
                                   num_frames, num_views)
    n_classes = probs.shape[-1]
    per_class = float(unlabeled.get('labelled_videos') or 1) / n_classes
    chosen, labels = choose(probs, per_class, config)
    names = class_names or [str(c) for c in range(n_classes)]
    summary = {'scored': len(records), 'chosen': int(len(chosen)),
               'per_class': {names[c]: int((labels == c).sum()) for c in range(n_classes)},
               'threshold': config.threshold,
               'videos': [{'source_path': source_path(records[i]), 'label': names[label],
                           'probability': round(float(probs[i, label]), 4)}
                          for i, label in zip(chosen, labels)]}
    write_pseudo_labels(directory, records, chosen, labels, summary)
    print(f'Trainer: pseudo-labelled {len(chosen)} of {len(records)} unlabelled videos at '
          f'probability ≥ {config.threshold} (' +
          ', '.join(f'{k} {v}' for k, v in summary['per_class'].items()) + ')', flush=True)
  return {**summary, 'path': os.path.join(directory, PSEUDO_RECORDS)}
