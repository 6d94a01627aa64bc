"""The temporal sampling rule, in the graph: which T of a record's stored frames form a clip.

The rule is `data.sampling`'s (ingestion stores a video's n frames at `sample_fps`, then
empty strings, N slots in all); this module applies it to batches of records and is tested to
agree with it:
  training         one clip at a uniformly random position and speed, drawn at every visit:
                   a stride over the stored frames of 1/1.25 to 1.25 (slower and faster
                   motion, log-uniform, mean stride ≈ 1), the clip's frames
                   start + round(i x stride) (`sampling.clip_offsets`);
  evaluation and   K views at the centres of K equal segments of the n - T possible starts
  serving          (K = 1: the central clip; `sampling.view_starts`); their probabilities are
                   averaged. A record of at most T frames has one view: it is scored once.
Transform's `preprocessing_fn` decodes the central clip (`central_clip`); the Trainer and the
serving signature choose a clip by handing it a record holding only that clip (`as_records`).
Selection works on JPEG bytes, so only the T chosen frames are ever decoded.
"""
from __future__ import annotations

import math

import tensorflow as tf

from vivit_tfx.data.sampling import MAX_SPEED


def valid_counts(frames: tf.Tensor) -> tf.Tensor:
  """[B, N] JPEG bytes ('' = empty slot) → [B] int32 number of frames."""
  return tf.reduce_sum(tf.cast(tf.strings.length(frames) > 0, tf.int32), axis=1)


def view_starts(counts: tf.Tensor, num_frames: int, num_views) -> tf.Tensor:
  """[B] frame counts → [B, K] first stored frame of each evaluation view (K an int or a
  scalar tensor)."""
  room = tf.cast(tf.maximum(counts - num_frames, 0), tf.float32)  # [B]
  centres = (tf.range(num_views, dtype=tf.float32) + 0.5) / tf.cast(num_views, tf.float32)
  return tf.cast(tf.floor(room[:, None] * centres[None, :]), tf.int32)


def gather_clips(frames: tf.Tensor, starts: tf.Tensor, num_frames: int) -> tf.Tensor:
  """[B, N] frames, [B, K] starts → [B, K, T] the frames of each clip (looped if short)."""
  counts = tf.maximum(valid_counts(frames), 1)  # [B]
  index = starts[:, :, None] + tf.range(num_frames)[None, None, :]  # [B, K, T]
  index = index % counts[:, None, None]
  return tf.gather(frames, index, batch_dims=1)


def as_records(clips: tf.Tensor, stored_frames: int) -> tf.Tensor:
  """[M, T] clips → [M, N] records holding only that clip (whose central clip it is)."""
  pad = tf.fill([tf.shape(clips)[0], stored_frames - clips.shape[1]], '')
  return tf.concat([clips, pad], axis=1)


def central_clip(frames: tf.Tensor, num_frames: int) -> tf.Tensor:
  """[B, N] → [B, T]: the one evaluation view (K = 1)."""
  starts = view_starts(valid_counts(frames), num_frames, 1)
  return gather_clips(frames, starts, num_frames)[:, 0]


def random_clip_records(frames: tf.Tensor, num_frames: int,
                        max_speed: float = MAX_SPEED) -> tf.Tensor:
  """[B, N] → [B, N]: records holding one clip each (training), at a random position and a
  random speed: frames start + round(i x stride), i < T, stride log-uniform in
  [1/max_speed, max_speed], looped when the video is short."""
  if frames.shape[1] == num_frames:  # one clip per video: nothing to choose
    return frames
  counts = valid_counts(frames)  # [B]
  limit = math.log(max_speed)
  stride = tf.exp(tf.random.uniform(tf.shape(counts), -limit, limit))  # [B]
  draw = tf.random.uniform(tf.shape(counts), 0.0, 1.0)  # [B]
  index = clip_index(counts, stride, draw, num_frames)  # [B, T]
  return as_records(tf.gather(frames, index, batch_dims=1), frames.shape[1])


def clip_index(counts: tf.Tensor, stride: tf.Tensor, draw: tf.Tensor,
               num_frames: int) -> tf.Tensor:
  """[B] counts, [B] strides, [B] draws in [0, 1) → [B, T] stored frames of each training
  clip (`sampling.clip_offsets`)."""
  offsets = tf.cast(tf.round(tf.range(num_frames, dtype=tf.float32)[None, :] * stride[:, None]),
                    tf.int32)  # [B, T]
  room = tf.maximum(counts - offsets[:, -1] - 1, 0) + 1  # [B] possible starts
  starts = tf.minimum(tf.cast(draw * tf.cast(room, tf.float32), tf.int32), room - 1)  # [B]
  return (starts[:, None] + offsets) % tf.maximum(counts, 1)[:, None]


def view_records(frames: tf.Tensor, num_frames: int, num_views: int) -> tf.Tensor:
  """[B, N] → [B * K, N]: records holding one evaluation view each (video-major)."""
  starts = view_starts(valid_counts(frames), num_frames, num_views)
  clips = gather_clips(frames, starts, num_frames)  # [B, K, T]
  return as_records(tf.reshape(clips, [-1, num_frames]), frames.shape[1])
