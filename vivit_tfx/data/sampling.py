"""The temporal sampling rule: which source frames form a record, a clip and its views.

One rule, used by ingestion, predict, the timeline, watch, the review page and the benchmarks
(plain Python / numpy); the graph (`models.clip_views`) applies the same rule to records and is
tested to agree with it.

  rate          a fixed stride in source frames, never uneven steps: every s-th frame, s the
                integer whose rate fps / s is nearest `sample_fps` F as a ratio (⌊fps/F⌋, or
                ⌈fps/F⌉ when fps/F is above their geometric mean; at least 1: a source slower
                than F keeps every frame). The effective rate fps / s is F when fps is a
                multiple of F; at F = 8: 10 fps → s 1 (10 fps), 12 → 2 (6), 15 → 2 (7.5),
                20 → 3 (6.7), 24 → 3 (8), 25 → 3 (8.3), 30 → 4 (7.5), 60 → 8 (7.5)
                (`frame_stride`).
                Taking the frame on screen every 1/F s instead gives uneven steps (12 fps:
                1, 2, 1, 2) that look like acceleration.
  record        a video's frames at that stride over its central max_frames / F seconds (the
                record's max_duration_s): ⌊max_duration_s · fps / s⌋ frames, at most
                max_frames (the N slots; an effective rate above F fills them in less time,
                at least 1/√2 of it: 8 s of 10 at 10 fps) (`rate_indices`); without a rate,
                T frames spread over the whole video (`uniform_indices`). `stored_indices`
                picks between them.
  views         evaluation and serving: K clips of T consecutive stored frames at the centres
                of K equal segments of the n - T possible starts (`view_starts`,
                `view_indices`), looped when n < T.
  training      one clip at a random position and speed (`clip_offsets` given the draws).
  windows       a timeline window or a live stream: T frames at the stride from the window's
                start (`frames_at_rate`, `StreamSampler`).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np

DEFAULT_FPS = 25.0  # a video whose container does not say its rate
# Training clips play between 1/MAX_SPEED and MAX_SPEED times the stored rate. 1: at the stored
# rate. A fractional speed repeats or skips stored frames (round(i x stride)): uneven steps
# that fake the sudden accelerations telling a strike from smooth motion (issue 28).
MAX_SPEED = 1.0
_EPSILON = 1e-6  # absorbs float error at exact frame boundaries


def frame_stride(fps: float, sample_fps: float) -> int:
  """Source frames between samples: the integer s ≥ 1 whose rate fps / s is nearest
  `sample_fps` as a ratio (a factor too fast and one too slow count the same, as training's
  log-uniform speeds do). fps 0 (unknown) is taken as 25."""
  ratio = (fps or DEFAULT_FPS) / sample_fps
  low = max(1, int(ratio + _EPSILON))
  return low + 1 if ratio * ratio > low * (low + 1) * (1 + _EPSILON) else low


def effective_fps(fps: float, sample_fps: float) -> float:
  """The rate the rule samples a `fps` source at: fps / `frame_stride`."""
  fps = fps or DEFAULT_FPS
  return fps / frame_stride(fps, sample_fps)


def frame_at(seconds: float, fps: float, num_frames: int) -> int:
  """The source frame on screen at `seconds` (the last one starting at or before it)."""
  return min(num_frames - 1, int(seconds * fps + _EPSILON))


def frames_at_rate(start_s: float, count: int, fps: float, sample_fps: float,
                   num_frames: int) -> List[int]:
  """`count` frame indices every `frame_stride` source frames from the one on screen at
  `start_s`, clamped to the video."""
  first, stride = frame_at(start_s, fps, num_frames), frame_stride(fps, sample_fps)
  return [min(num_frames - 1, first + j * stride) for j in range(count)]


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
  """Every `frame_stride`-th source frame over the video's central max_frames / sample_fps
  seconds, at most `max_frames` of them.

  n frames stand for n x stride source frames, centred; a video shorter than one stride gives
  its first frame. fps 0 (unknown) is taken as 25.
  """
  if num_frames <= 0 or sample_fps <= 0 or max_frames <= 0:
    raise ValueError(f'need positive frames, rate and maximum, got {num_frames}, {sample_fps}, '
                     f'{max_frames}')
  fps = fps or DEFAULT_FPS
  stride = frame_stride(fps, sample_fps)
  span = int(max_frames / sample_fps * fps / stride + _EPSILON)  # frames of the record's seconds
  n = max(1, min(max_frames, span, num_frames // stride))
  first = max(0, (num_frames - n * stride) // 2)
  return [first + j * stride for j in range(n)]


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
  """Keeps every `frame_stride`-th frame of a stream, by stream time: a frame is kept once it
  is at most half a source frame before the next due time (the previous one + stride /
  `source_fps`); a frame more than one period past it (a gap) restarts the schedule. On a
  stream at `source_fps` whose timestamps stray from a constant rate by under a quarter of a
  frame: every stride-th frame, as `frames_at_rate` takes them; on other timestamps (dropped
  frames, a wrong reported rate): frames at the effective rate of stream time."""

  def __init__(self, sample_fps: float, source_fps: float):
    source_fps = source_fps or DEFAULT_FPS
    self.stride = frame_stride(source_fps, sample_fps)
    self.fps = source_fps / self.stride  # the effective rate
    self.period = 1.0 / self.fps
    self._slack = 0.5 / source_fps
    self._next: Optional[float] = None

  def keep(self, t: float) -> bool:
    """Whether the frame at stream time `t` (s) is kept."""
    if self._next is not None and t < self._next - self._slack:
      return False
    behind = self._next is None or t - self._next > self.period
    self._next = (t if behind else self._next) + self.period
    return True
