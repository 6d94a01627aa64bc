"""Ingestion step 1: read a video file and sample its frames.

Two rules: at a fixed rate (`rate_indices`: frames every 1/sample_fps seconds over the video's
central `max_frames / sample_fps` seconds; clips are cut from them later), or, when no rate is
set, T frames spread over the whole video (`sample_indices`: the centre of T equal segments).
Frames that are not kept are never converted to RGB: short gaps are *grabbed* (decoded by the
codec only), long gaps are skipped by seeking; kept frames are resized (aspect-preserving) and
centre-cropped.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

# Keep FFmpeg's per-packet complaints about broken files off the console; the reader reports
# one clear reason per file instead.
os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')
os.environ.setdefault('OPENCV_LOG_LEVEL', 'OFF')
import cv2  # pylint: disable=g-import-not-at-top
import numpy as np

VIDEO_EXTENSIONS = (
    '.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv', '.3gp',
    '.ts', '.ogv')

# Wanted frames further apart than this are reached by seeking rather than by decoding forward.
SEEK_GAP = 48

# Frames above this many pixels are refused rather than decoded (a 16k x 16k frame is 768 MiB).
MAX_FRAME_PIXELS = 8192 * 8192


class VideoReadError(Exception):
  """A video file could not be turned into a clip; the message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Container metadata of one video, as reported by the demuxer."""
  num_frames: int
  fps: float
  width: int
  height: int

  @property
  def duration_s(self) -> float:
    return self.num_frames / self.fps if self.fps > 0 else 0.0


@dataclasses.dataclass
class Clip:
  """T sampled frames of one video plus the metadata of the source."""
  frames: np.ndarray  # [T, H, W, 3] uint8 RGB
  info: VideoInfo
  indices: List[int]  # source frame index of each sampled frame


def sample_indices(num_frames: int, num_samples: int) -> List[int]:
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
  fps = fps or 25.0
  duration = num_frames / fps
  n = max(1, min(max_frames, int(duration * sample_fps + 1e-6)))
  start = max(0.0, (duration - n / sample_fps) / 2)
  return [min(num_frames - 1, int((start + j / sample_fps) * fps + 1e-6)) for j in range(n)]


def resize_and_crop(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
  """Aspect-preserving resize so the frame covers `size` (H, W), then centre crop."""
  out_h, out_w = size
  h, w = frame.shape[:2]
  scale = max(out_h / h, out_w / w)
  new_h, new_w = max(out_h, round(h * scale)), max(out_w, round(w * scale))
  interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
  resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
  top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
  return resized[top:top + out_h, left:left + out_w]


def probe(path: str) -> VideoInfo:
  """Reads container metadata without decoding; raises VideoReadError with the reason."""
  capture = open_video(path)
  try:
    return _info(capture, path)
  finally:
    capture.release()


def read_clip(path: str, num_frames: int, size: Tuple[int, int], sample_fps: float = 0.0,
              max_frames: int = 0) -> Clip:
  """Samples frames of `path`, resized and cropped to `size` (H, W): `num_frames` spread over
  the whole video, or with `sample_fps` up to `max_frames` at that rate (`rate_indices`)."""
  choose = (lambda info: rate_indices(info.num_frames, info.fps, sample_fps, max_frames)) if (
      sample_fps > 0) else (lambda info: sample_indices(info.num_frames, num_frames))
  capture = open_video(path)
  try:
    info = _info(capture, path)
    indices = choose(info)
    frames, decoded = _grab_indices(capture, indices, size)
  finally:
    capture.release()
  if decoded < info.num_frames and max(indices) >= decoded:
    # The container over-reported its frame count: resample over the frames that exist.
    if decoded == 0:
      raise VideoReadError('no decodable frames')
    info = dataclasses.replace(info, num_frames=decoded)
    return _reread(path, info, choose(info), size)
  return Clip(np.stack([frames[i] for i in indices]), info, indices)


def _reread(path: str, info: VideoInfo, indices: List[int], size: Tuple[int, int]) -> Clip:
  capture = open_video(path)
  try:
    frames, _ = _grab_indices(capture, indices, size)
  finally:
    capture.release()
  missing = [i for i in indices if i not in frames]
  if missing:
    raise VideoReadError(f'frames {missing[:3]} could not be decoded')
  return Clip(np.stack([frames[i] for i in indices]), info, indices)


def open_video(path: str) -> cv2.VideoCapture:
  """Opens a video for reading; raises VideoReadError with the reason it cannot."""
  if not os.path.isfile(path):
    raise VideoReadError('not a regular file (missing, a directory or a broken link)')
  if not os.access(path, os.R_OK):
    raise VideoReadError('permission denied')
  if os.path.getsize(path) == 0:
    raise VideoReadError('empty file (0 bytes)')
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    capture.release()
    raise VideoReadError('not a readable video (no demuxer/codec could open it)')
  return capture


def _info(capture: cv2.VideoCapture, path: str) -> VideoInfo:
  del path
  num_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
  fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
  width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
  height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
  if width <= 0 or height <= 0:
    raise VideoReadError('no video stream (frame size is 0)')
  if width * height > MAX_FRAME_PIXELS:
    raise VideoReadError(f'frame size {width}x{height} exceeds the limit of {MAX_FRAME_PIXELS} '
                         'pixels')
  if num_frames <= 0:
    raise VideoReadError('zero frames reported by the container')
  if not np.isfinite(fps) or fps <= 0 or fps > 1000:
    fps = 0.0
  return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height)


def _grab_indices(capture: cv2.VideoCapture, indices: List[int],
                  size: Tuple[int, int]) -> Tuple[dict, int]:
  """Reads the wanted frames in order; returns ({index: RGB frame of `size`}, frames reached).

  Each kept frame is resized and cropped (`resize_and_crop`) *before* its colour conversion,
  so only `size` pixels are converted.

  Between two wanted frames that are far apart the reader seeks (the demuxer jumps to the
  nearest keyframe) instead of decoding everything in between; short gaps are `grab()`bed,
  which decodes but never converts to RGB. Unwanted frames are never converted to RGB.
  """
  frames = {}
  position = 0
  for index in sorted(set(indices)):
    if index - position > SEEK_GAP and capture.set(cv2.CAP_PROP_POS_FRAMES, index):
      position = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
    while position < index:
      if not capture.grab():
        return frames, position
      position += 1
    ok, bgr = capture.read()
    if not ok or bgr is None:
      return frames, position
    frames[index] = cv2.cvtColor(resize_and_crop(bgr, size), cv2.COLOR_BGR2RGB)
    position += 1
  return frames, position


def read_all_frames(path: str) -> Optional[np.ndarray]:
  """Decodes every frame to RGB (the seed's approach; used only as a benchmark baseline)."""
  capture = open_video(path)
  frames = []
  try:
    while True:
      ok, bgr = capture.read()
      if not ok:
        break
      frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
  finally:
    capture.release()
  return np.stack(frames) if frames else None
