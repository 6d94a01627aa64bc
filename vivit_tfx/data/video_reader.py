"""Ingestion step 1: read a video file and sample its frames.

Which frames: `sampling.stored_indices` (every stride-th frame, near a fixed rate, over the
video's central part, or, when no rate is set, T frames spread over the whole video).

Decoding is PyAV's (FFmpeg): frame i is the i-th frame the decoder delivers, in presentation
order. Frames that are not kept are decoded but never converted; a kept frame is scaled and
converted to RGB in one swscale pass at the output size (aspect-preserving, so it covers the
target), then centre-cropped. Long gaps between kept frames are skipped by seeking to a
keyframe; where timestamps do not count frames the reader decodes sequentially instead.
OpenCV stays for live streams (`open_video`, used by `watch`) and for reference decoding.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

# Keep FFmpeg's per-packet complaints about broken files off the console; the reader reports
# one clear reason per file instead.
os.environ.setdefault('OPENCV_FFMPEG_LOGLEVEL', '-8')
os.environ.setdefault('OPENCV_LOG_LEVEL', 'OFF')
import av  # pylint: disable=g-import-not-at-top
import cv2  # pylint: disable=g-import-not-at-top
import numpy as np
from av.video.reformatter import VideoReformatter  # pylint: disable=g-import-not-at-top

from vivit_tfx.data import sampling  # pylint: disable=g-import-not-at-top

VIDEO_EXTENSIONS = (
    '.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv', '.3gp',
    '.ts', '.ogv')

# Wanted frames further apart than this are reached by seeking rather than by decoding forward.
SEEK_GAP = 48

# Codec threads per decoder (0: FFmpeg's choice, one per core); worker processes set 1.
_DECODER_THREADS = 0


def set_decoder_threads(count: int) -> None:
  """Codec threads of every later decoder in this process (0: one per core)."""
  global _DECODER_THREADS  # pylint: disable=global-statement
  _DECODER_THREADS = count


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


def _cover_size(height: int, width: int, size: Tuple[int, int]) -> Tuple[int, int]:
  """(H, W) of the aspect-preserving resize of a height×width frame that covers `size` (H, W)."""
  out_h, out_w = size
  scale = max(out_h / height, out_w / width)
  return max(out_h, round(height * scale)), max(out_w, round(width * scale))


def _centre_crop(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
  """[h, w, C] → the centred [H, W, C] window, `size` = (H, W)."""
  out_h, out_w = size
  top, left = (frame.shape[0] - out_h) // 2, (frame.shape[1] - out_w) // 2
  return frame[top:top + out_h, left:left + out_w]


def _to_rgb(frame: av.VideoFrame, size: Tuple[int, int],
            reformatter: VideoReformatter) -> np.ndarray:
  """A decoded frame → RGB uint8 [H, W, 3] of `size`: one swscale pass scales (area averaging
  when shrinking) and converts at the covering size of `data.frames.resize_and_crop`;
  then centre crop. The decoder's own scaler, so a kept frame is converted once, at its small
  size; within a few levels of `data.frames.resize_and_crop` of the RGB frame."""
  new_h, new_w = _cover_size(frame.height, frame.width, size)
  shrinks = new_h * new_w < frame.height * frame.width
  rgb = reformatter.reformat(frame, width=new_w, height=new_h, format='rgb24', threads=1,
                             interpolation='AREA' if shrinks else 'BILINEAR').to_ndarray()
  return _centre_crop(rgb, size)


def probe(path: str) -> VideoInfo:
  """Reads container metadata without decoding; raises VideoReadError with the reason."""
  with _open_container(path) as container:
    return _info(container)


def read_clip(path: str, num_frames: int, size: Tuple[int, int], sample_fps: float = 0.0,
              max_frames: int = 0) -> Clip:
  """Samples frames of `path`, resized and cropped to `size` (H, W): `num_frames` spread over
  the whole video, or with `sample_fps` up to `max_frames` at its stride
  (`sampling.stored_indices`)."""
  with _open_container(path) as container:
    info = _info(container)
    indices = sampling.stored_indices(info.num_frames, info.fps, num_frames, sample_fps,
                                      max_frames)
    try:
      frames, decoded = _decode_indices(container, indices, size,
                                        info.fps if _timestamps_count_frames(container) else 0.0)
    except _TimestampsUnreliable:
      frames = None
  if frames is None:
    frames, decoded = _decode_sequentially(path, indices, size)
  if decoded < info.num_frames and max(indices) >= decoded:
    # The container over-reported its frame count: resample over the frames that exist.
    if decoded == 0:
      raise VideoReadError('no decodable frames')
    info = dataclasses.replace(info, num_frames=decoded)
    indices = sampling.stored_indices(info.num_frames, info.fps, num_frames, sample_fps,
                                      max_frames)
    frames, _ = _decode_sequentially(path, indices, size)
  missing = [i for i in indices if i not in frames]
  if missing:
    raise VideoReadError(f'frames {missing[:3]} could not be decoded')
  return Clip(np.stack([frames[i] for i in indices]), info, indices)


def iter_frames(path: str, indices: Sequence[int], size: Tuple[int, int],
                seek: bool = False) -> Iterator[Tuple[int, np.ndarray]]:
  """Yields (index, RGB frame [H, W, 3] of `size`) for the distinct `indices` in order, decoding
  the video once front to back (the frames `read_clip` takes for the same indices). `seek`:
  gaps (a range late in a long video) are skipped by seeking where timestamps count frames, as
  `read_clip` does; if they stop counting after a seek, the rest is decoded sequentially."""
  delivered = set()
  with _open_container(path) as container:
    fps = _info(container).fps if seek and _timestamps_count_frames(container) else 0.0
    try:
      for index, frame in _Decoder(container, fps).read(indices, size):
        delivered.add(index)
        yield index, frame
      return
    except _TimestampsUnreliable:
      pass
  with _open_container(path) as container:
    yield from _Decoder(container, fps=0.0).read(
        [i for i in indices if i not in delivered], size)


def _check_file(path: str) -> None:
  """Raises VideoReadError unless `path` is a non-empty regular file we may read."""
  if not os.path.isfile(path):
    raise VideoReadError('not a regular file (missing, a directory or a broken link)')
  if not os.access(path, os.R_OK):
    raise VideoReadError('permission denied')
  if os.path.getsize(path) == 0:
    raise VideoReadError('empty file (0 bytes)')


def _open_container(path: str) -> av.container.InputContainer:
  """Opens a video file with PyAV; raises VideoReadError with the reason it cannot."""
  _check_file(path)
  try:
    container = av.open(path, metadata_errors='ignore')
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoReadError('not a readable video (no demuxer/codec could open it)') from e
  if not container.streams.video:
    container.close()
    raise VideoReadError('no video stream')
  return container


def open_video(path: str) -> cv2.VideoCapture:
  """Opens a video with OpenCV (live sources, thumbnails, reference decoding); raises
  VideoReadError with the reason it cannot."""
  _check_file(path)
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    capture.release()
    raise VideoReadError('not a readable video (no demuxer/codec could open it)')
  return capture


def _duration_s(container: av.container.InputContainer, stream: av.video.VideoStream) -> float:
  if container.duration:
    return container.duration / av.time_base
  return float(stream.duration * stream.time_base) if stream.duration else 0.0


def _info(container: av.container.InputContainer) -> VideoInfo:
  """Metadata of the first video stream. The frame count is the container's, else duration ×
  frame rate (OpenCV's estimate, for containers that store none: MKV, WebM, MPEG-TS)."""
  stream = container.streams.video[0]
  width, height = stream.codec_context.width, stream.codec_context.height
  if width <= 0 or height <= 0:
    raise VideoReadError('no video stream (frame size is 0)')
  if width * height > MAX_FRAME_PIXELS:
    raise VideoReadError(f'frame size {width}x{height} exceeds the limit of {MAX_FRAME_PIXELS} '
                         'pixels')
  fps = float(stream.guessed_rate or stream.average_rate or 0.0)
  num_frames = stream.frames or int(np.floor(_duration_s(container, stream) * fps + 0.5))
  if num_frames <= 0:
    raise VideoReadError('zero frames reported by the container')
  if not np.isfinite(fps) or fps <= 0 or fps > 1000:
    fps = 0.0
  return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height)


def _timestamps_count_frames(container: av.container.InputContainer) -> bool:
  """False when the stored frame count and duration × frame rate disagree (variable frame
  rate, dropped frames): then a timestamp does not give a frame index and seeking is off."""
  stream = container.streams.video[0]
  fps = float(stream.guessed_rate or 0.0)
  if fps <= 0 or not stream.frames:
    return fps > 0
  return abs(stream.frames - _duration_s(container, stream) * fps) <= 1


class _TimestampsUnreliable(Exception):
  """After a seek, frame timestamps did not give frame indices: decode sequentially instead."""


def _decoded(container: av.container.InputContainer,
             stream: av.video.VideoStream) -> Iterator[av.VideoFrame]:
  """Frames in presentation order from the demuxer's position on. A packet the codec rejects
  is skipped and an unreadable rest of the file ends the video (as OpenCV's reader does)."""
  try:
    for packet in container.demux(stream):
      try:
        frames = packet.decode()
      except av.FFmpegError:
        continue
      yield from frames
  except av.FFmpegError:
    try:
      yield from stream.codec_context.decode(None)  # the frames the decoder still holds
    except av.FFmpegError:
      pass


@dataclasses.dataclass(frozen=True)
class _Clock:
  """Frame index ↔ pts of a constant-rate stream, anchored at frame 0's pts."""
  origin: int  # pts of frame 0
  ticks_per_frame: float  # pts units (stream time base) per frame

  def index(self, frame: av.VideoFrame) -> Optional[int]:
    return None if frame.pts is None else round((frame.pts - self.origin) / self.ticks_per_frame)

  def pts(self, index: int) -> int:
    return self.origin + round(index * self.ticks_per_frame)


class _Decoder:
  """Decodes one video stream front to back, numbering frames 0, 1, … as they come out.

  With `fps` > 0 it seeks over gaps longer than SEEK_GAP, while frame 0's pts plus index/fps
  predicts every frame's pts; a frame that breaks the rule before any seek turns seeking off,
  after a seek raises _TimestampsUnreliable. fps 0: sequential only.
  """

  def __init__(self, container: av.container.InputContainer, fps: float):
    self.container = container
    self.stream = container.streams.video[0]
    self.stream.thread_type = 'AUTO'  # frame + slice threads inside the codec
    self.stream.codec_context.thread_count = _DECODER_THREADS
    self.fps = fps
    self.clock: Optional[_Clock] = None
    self.seeked = False
    self.position = 0  # index of the next frame out of the decoder = frames delivered so far
    self._frames = _decoded(container, self.stream)
    if fps > 0:
      self._start_clock()

  def read(self, indices: Sequence[int],
           size: Tuple[int, int]) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (index, RGB frame [H, W, 3] of `size`) for the distinct `indices`, ascending,
    that the video has; only those frames are converted."""
    reformatter = VideoReformatter()
    for index in sorted(set(indices)):
      if self.clock is not None and index - self.position > SEEK_GAP:
        self._seek(index)
      while self.position <= index:
        frame = self._next()
        if frame is None:
          return
      yield index, _to_rgb(frame, size, reformatter)

  def _start_clock(self) -> None:
    """Decodes frame 0 ahead (`_next` still delivers it): its pts anchors the clock, so even
    the first gap (up to a long video's central seconds) can be skipped by seeking."""
    frame = next(self._frames, None)
    if frame is not None:
      self._frames = itertools.chain([frame], self._frames)
      if frame.pts is not None:
        self.clock = _Clock(frame.pts, 1 / (self.fps * float(self.stream.time_base)))

  def _next(self) -> Optional[av.VideoFrame]:
    """The frame at `position` (then position + 1), or None at the end of the video."""
    frame = next(self._frames, None)
    if frame is None:
      return None
    if self.clock is not None and self.clock.index(frame) != self.position:
      if self.seeked:
        raise _TimestampsUnreliable(f'frame {self.position} has pts {frame.pts}')
      self.clock = None  # timestamps do not count frames: decode sequentially from here
    self.position += 1
    return frame

  def _seek(self, index: int) -> None:
    """Moves to a keyframe at or before `index` (trying a second, earlier one when the first
    lands after it); `position` becomes that keyframe's index."""
    for target in (index, index - SEEK_GAP):
      landing = self._seek_to(target)
      if landing is not None and landing[0] <= index:
        self.seeked = True
        self.position, frame = landing
        self._frames = itertools.chain([frame], self._frames)
        return
    raise _TimestampsUnreliable(f'no keyframe found at or before frame {index}')

  def _seek_to(self, target: int) -> Optional[Tuple[int, av.VideoFrame]]:
    """Seeks to the keyframe before frame `target`'s pts: (its index, it), or None."""
    try:
      self.container.seek(self.clock.pts(target), stream=self.stream, backward=True)
    except av.FFmpegError:
      return None
    self._frames = _decoded(self.container, self.stream)
    # Frames before the first keyframe (an open GOP's leading frames) lack their references.
    frame = next((f for f in self._frames if f.key_frame), None)
    landing = None if frame is None else self.clock.index(frame)
    return None if landing is None else (landing, frame)


def _decode_indices(container: av.container.InputContainer, indices: Sequence[int],
                    size: Tuple[int, int], fps: float) -> Tuple[Dict[int, np.ndarray], int]:
  """({index: RGB frame of `size`}, frames delivered); seeks over long gaps when fps > 0."""
  decoder = _Decoder(container, fps)
  frames = dict(decoder.read(indices, size))
  return frames, decoder.position


def _decode_sequentially(path: str, indices: Sequence[int],
                         size: Tuple[int, int]) -> Tuple[Dict[int, np.ndarray], int]:
  with _open_container(path) as container:
    return _decode_indices(container, indices, size, fps=0.0)


class FrameStream:
  """A file, or a stream URL FFmpeg reads (RTSP, HTTP MJPEG, HLS), decoded frame by frame with
  PyAV for `watch`: `grab` decodes the next frame without converting it; `rgb(size)` converts
  a kept one once, by swscale at its small size, exactly as ingestion converts (`_to_rgb`: the
  pixels the model was trained on); `snapshot()` the whole frame, converted when shown."""

  def __init__(self, container: av.container.InputContainer):
    self.container = container
    self.stream = container.streams.video[0]
    if self.stream.codec_context is None:  # no decoder for its codec
      container.close()
      raise VideoReadError('no decoder for its video codec')
    self.stream.thread_type = 'AUTO'
    self.stream.codec_context.thread_count = _DECODER_THREADS
    self._frames = _decoded(container, self.stream)
    self._frame: Optional[av.VideoFrame] = None
    self._reformatter = VideoReformatter()

  @classmethod
  def open_file(cls, path: str) -> 'FrameStream':
    """Raises VideoReadError with the reason a file cannot be read."""
    return cls(_open_container(path))

  @classmethod
  def open_url(cls, url: str, timeout_s: float = 5.0) -> Optional['FrameStream']:
    """None when the stream cannot be opened now (a live source is retried)."""
    options = {'rtsp_transport': 'tcp'} if url.startswith('rtsp') else {}
    try:
      container = av.open(url, options=options, timeout=(timeout_s, timeout_s),
                          metadata_errors='ignore')
    except (av.FFmpegError, OSError, ValueError):
      return None
    if not container.streams.video:
      container.close()
      return None
    try:
      return cls(container)
    except VideoReadError:
      return None

  @property
  def fps(self) -> float:
    """The stream's frame rate (0 when it states none)."""
    rate = self.stream.average_rate or self.stream.guessed_rate
    return float(rate) if rate else 0.0

  def grab(self) -> bool:
    """Decodes the next frame; False at the end (or when the stream broke off)."""
    try:
      self._frame = next(self._frames, None)
    except (av.FFmpegError, OSError):
      self._frame = None
    return self._frame is not None

  def rgb(self, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """The grabbed frame as RGB uint8 [H, W, 3] of `size`, as ingestion stores it (None if it
    cannot be converted)."""
    try:
      return _to_rgb(self._frame, size, self._reformatter)
    except (av.FFmpegError, ValueError):
      return None

  def snapshot(self) -> Callable[[], Optional[np.ndarray]]:
    """The grabbed frame, whole: a call converts it to BGR uint8 [h, w, 3] (None if it cannot
    be), so a frame is converted only when something shows it (an event's JPEG)."""
    frame, converted = self._frame, []

    def bgr() -> Optional[np.ndarray]:
      if not converted:  # once: an event's start and end records show the same peak
        try:
          converted.append(frame.to_ndarray(format='bgr24'))
        except (av.FFmpegError, ValueError):
          converted.append(None)
      return converted[0]

    return bgr

  def release(self) -> None:
    self.container.close()


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
