"""The temporal sampling rule: which source frames form a record, a clip and its views.

One rule, used by ingestion, predict, the timeline, watch, the review page and the benchmarks
(plain Python / numpy); the graph (`models.clip_views`) applies the same rule to records and is
tested to agree with it.

  record        a video's frames every 1/sample_fps s over its central max_frames / sample_fps
                seconds (`rate_indices`); without a rate, T frames spread over the whole video
                (`uniform_indices`). `stored_indices` picks between them.
  views         evaluation and serving: K clips of T consecutive stored frames at the centres
                of K equal segments of the n - T possible starts (`view_starts`,
                `view_indices`), looped when n < T.
  training      one clip at a random position and speed (`clip_offsets` given the draws).
  windows       a timeline window or a live stream: T frames at the rate from the window's
                start (`frames_at_rate`, `StreamSampler`).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np

DEFAULT_FPS = 25.0  # a video whose container does not say its rate
MAX_SPEED = 1.25  # training clips play between 1/MAX_SPEED and MAX_SPEED times the stored rate
_EPSILON = 1e-6  # absorbs float error at exact frame boundaries


def frame_at(seconds: float, fps: float, num_frames: int) -> int:
  """The source frame on screen at `seconds` (the last one starting at or before it)."""
  return min(num_frames - 1, int(seconds * fps + _EPSILON))


def frames_at_rate(start_s: float, count: int, fps: float, sample_fps: float,
                   num_frames: int) -> List[int]:
  """`count` frame indices every 1/sample_fps s from `start_s`, clamped to the video."""
  return [frame_at(start_s + j / sample_fps, fps, num_frames) for j in range(count)]


def uniform_indices(num_frames: int, num_samples: int) -> List[int]:
  """Uniform frame indices over the whole video; loop-padded when it is short.

  Long video: the centre frame of each of `num_samples` equal segments.
  Short video (fewer frames than samples): 0, 1, …, n-1, 0, 1, … (loop padding).
  """
  if num_frames <= 0:
    raise ValueError(f'num_frames must be positive, got {num_frames}')
  if num_samples <= 0:
    raise ValueError(f'num_samples must be positive, got {num_samples}')
  if num_frames < num_samples:
    return [i % num_frames for i in range(num_samples)]
  return [int((i + 0.5) * num_frames / num_samples) for i in range(num_samples)]


def rate_indices(num_frames: int, fps: float, sample_fps: float, max_frames: int) -> List[int]:
  """Source frame indices every 1/sample_fps seconds over the video's central part.

  At most `max_frames` frames (the central max_frames / sample_fps seconds); a video shorter
  than one sample interval gives its first frame. fps 0 (unknown) is taken as 25.
  """
  if num_frames <= 0 or sample_fps <= 0 or max_frames <= 0:
    raise ValueError(f'need positive frames, rate and maximum, got {num_frames}, {sample_fps}, '
                     f'{max_frames}')
  fps = fps or DEFAULT_FPS
  duration = num_frames / fps
  n = max(1, min(max_frames, int(duration * sample_fps + _EPSILON)))
  start = max(0.0, (duration - n / sample_fps) / 2)
  return frames_at_rate(start, n, fps, sample_fps, num_frames)


def stored_count(clip_frames: int, sample_fps: float, max_duration_s: float) -> int:
  """Frame slots of a record (N): the frames of `max_duration_s` at `sample_fps`, at least T;
  T without a rate."""
  if sample_fps <= 0:
    return clip_frames
  return max(clip_frames, int(math.ceil(max_duration_s * sample_fps - _EPSILON)))


def stored_indices(num_frames: int, fps: float, clip_frames: int, sample_fps: float,
                   max_frames: int) -> List[int]:
  """The source frames a record stores: at `sample_fps` (up to `max_frames`), or without a
  rate `clip_frames` spread over the whole video."""
  if sample_fps > 0:
    return rate_indices(num_frames, fps, sample_fps, max_frames)
  return uniform_indices(num_frames, clip_frames)


def view_starts(count: int, clip_frames: int, num_views: int) -> List[int]:
  """First stored frame of each of the K evaluation views of a record of `count` frames.
  float32 arithmetic, as the graph's `clip_views.view_starts`."""
  room = np.float32(max(count - clip_frames, 0))
  centres = (np.arange(num_views, dtype=np.float32) + np.float32(0.5)) / np.float32(num_views)
  return [int(s) for s in np.floor(room * centres)]


def loop(stored: Sequence[int], start: int, clip_frames: int) -> List[int]:
  """T consecutive entries of `stored` from `start`, looped when it is short."""
  return [stored[(start + i) % len(stored)] for i in range(clip_frames)]


def view_indices(stored: Sequence[int], clip_frames: int, num_views: int) -> List[List[int]]:
  """[K][T] entries of `stored` (a record's source frames) that form each evaluation view."""
  return [loop(stored, s, clip_frames)
          for s in view_starts(len(stored), clip_frames, num_views)]


def clip_offsets(count: int, clip_frames: int, stride: float, draw: float) -> List[int]:
  """The training clip of a record of `count` frames, given its draws: stored frames
  start + round(i x stride), i < T, start = the `draw` ∈ [0, 1) quantile of the possible
  starts, looped when short. The graph draws stride log-uniform in [1/MAX_SPEED, MAX_SPEED]
  (`clip_views.random_clip_records`)."""
  offsets = np.round(np.arange(clip_frames, dtype=np.float32) * np.float32(stride)).astype(int)
  room = max(count - int(offsets[-1]) - 1, 0) + 1
  start = min(int(np.float32(draw) * np.float32(room)), room - 1)
  return [int(i) for i in (start + offsets) % max(count, 1)]


def random_clip(count: int, clip_frames: int, rng: np.random.Generator,
                max_speed: float = MAX_SPEED) -> List[int]:
  """A training clip's stored frames with draws from `rng` (numpy users: the benchmarks)."""
  limit = math.log(max_speed)
  return clip_offsets(count, clip_frames, math.exp(rng.uniform(-limit, limit)), rng.uniform())


class StreamSampler:
  """Keeps frames of a stream at `fps` of stream time, whatever rate the source delivers (on a
  constant-rate stream whose rate is a multiple of `fps`: the frames `frames_at_rate` takes)."""

  def __init__(self, fps: float):
    self.period = 1.0 / fps
    self._next: Optional[float] = None

  def keep(self, t: float) -> bool:
    """Whether the frame at stream time `t` (s) is kept; a frame due at exactly the next
    sample time is kept whatever the float error of the sum of periods."""
    if self._next is not None and t < self._next - _EPSILON * self.period:
      return False
    behind = self._next is None or t - self._next > self.period
    self._next = (t if behind else self._next) + self.period
    return True

  def reset(self) -> None:
    self._next = None
