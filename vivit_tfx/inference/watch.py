"""`vivit-tfx watch SOURCE...`: live violence detection on cameras, streams or files.

Capture (one thread per camera: PyAV's FFmpeg decodes with the GIL released; a webcam through
OpenCV) → sampler
(every stride-th source frame: the model's clip rule, `sampling.StreamSampler`) → ring buffer
of T frames → every stride, a window goes to the scorer thread through the camera's one-place
mailbox: on a live source a new window replaces one the scorer has not taken yet (capture
never waits; the replaced window is counted as dropped), on a file capture waits (nothing is
lost). The scorer takes every window waiting (at most one per camera) and scores them in one
batched model call. Per camera, scores are smoothed (mean of the last k windows or an EMA) and
turned into events with hysteresis (start / stop thresholds and a minimum length). Events go
to stdout as JSON lines, with a JPEG of the peak frame, and to webhooks, each on its own thread
with bounded retries and a bounded queue.

Memory, per camera: the ring (T small frames), one window in the mailbox and one being scored,
the decoded frames of the last k windows for the peak snapshot (converted to BGR only for an
event's JPEG), and bounded latency samples — not the
stream. A camera that fails or reconnects holds up no other: each has its own thread, mailbox,
detector and snapshot folder; only the scorer and the webhooks are shared.

Drift (`watch_drift`): each camera's last scored windows are compared with the training split's
statistics the model carries, once per `drift_interval_s` of stream, one line per drifted
feature.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import json
import os
import queue
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from vivit_tfx.data import frames as frames_lib
from vivit_tfx.data import sampling, video_reader
from vivit_tfx.inference import model_scorer, predict, watch_drift

import cv2  # pylint: disable=g-bad-import-order  # after video_reader sets OpenCV's log level

DEFAULT_WINDOW_S = 2.0  # clip span when the model does not store its sample_fps


@dataclasses.dataclass(frozen=True)
class WatchConfig:
  """What `watch` reads, how it decides, where it reports."""
  source: str
  model_dir: str
  out_dir: str = 'output/watch'
  stride_s: float = 1.0  # a window is scored every stride
  average: int = 3  # smoothing: mean of the last k window scores
  ema: float = 0.0  # > 0: exponential moving average with this weight instead
  start_threshold: float = 0.6
  stop_threshold: float = 0.4
  min_event_s: float = 1.0
  webhooks: Tuple[str, ...] = ()
  webhook_timeout_s: float = 5.0
  webhook_retries: int = 3
  max_seconds: float = 0.0  # 0: until the end of a file / Ctrl-C
  reconnect_s: float = 30.0  # a live source silent this long (after retries) ends the watch
  realtime: bool = False  # a file: read at its frame rate, as a camera would deliver it
  cameras: Tuple['Camera', ...] = ()  # several named sources; empty: `source`, unnamed
  # Drift against the training split the model carries (`watch_drift`): every this many
  # seconds of stream (0: off), the last `drift_windows` windows of a camera, TFDV's
  # Jensen-Shannon divergence above `drift_threshold`.
  drift_interval_s: float = 60.0
  drift_windows: int = 60
  drift_threshold: float = 0.3


@dataclasses.dataclass(frozen=True)
class Camera:
  """A source with a name: the name goes into its events, summary and snapshot folder."""
  name: str  # '': the one unnamed source of `vivit-tfx watch SOURCE` (records as before)
  source: str


def cameras_of(config: WatchConfig) -> Tuple[Camera, ...]:
  return config.cameras or (Camera('', config.source),)


def sampling_rule(model_dir: str) -> Tuple[int, Tuple[int, int], float, str]:
  """(T, frame size, sample fps, note) from the pushed model's clip_config.json."""
  clip = predict.clip_config_of(model_dir)
  if clip.sample_fps:
    return clip.num_frames, tuple(clip.frame_size), float(clip.sample_fps), ''
  fps = clip.num_frames / DEFAULT_WINDOW_S
  return (clip.num_frames, tuple(clip.frame_size), fps,
          f'the model stores no sample_fps: sampling {clip.num_frames} frames over '
          f'{DEFAULT_WINDOW_S:g} s ({fps:g} fps)')


# --- capture ---------------------------------------------------------------------------------
class Resizer:
  """`frames.resize_and_crop` (the antialiased resize and centre crop of the graph side) as a
  compiled graph, shared by the cameras (`resizer`): the frames of a webcam, which OpenCV
  delivers whole and in BGR (files and stream URLs are converted by swscale at their small
  size, as ingestion converts: `video_reader.FrameStream`)."""

  def __init__(self, size: Tuple[int, int]):
    def resize(rgb):  # uint8 [H, W, 3] → uint8 [*size, 3]
      return tf.cast(frames_lib.resize_and_crop(rgb, size), tf.uint8)

    self._graph = tf.function(resize, autograph=False, reduce_retracing=True)

  def __call__(self, rgb: np.ndarray) -> np.ndarray:
    return self._graph(tf.constant(rgb)).numpy()


@functools.lru_cache(maxsize=4)
def resizer(size: Tuple[int, int]) -> Resizer:
  return Resizer(tuple(size))


class WebcamFrames:
  """A webcam (device index) through OpenCV, with `video_reader.FrameStream`'s methods."""

  def __init__(self, index: int):
    self.capture = cv2.VideoCapture(index)
    self._bgr: Optional[np.ndarray] = None

  def opened(self) -> bool:
    return self.capture.isOpened()

  @property
  def fps(self) -> float:
    return self.capture.get(cv2.CAP_PROP_FPS) or 0.0

  def grab(self) -> bool:
    self._bgr = None
    return self.capture.grab()

  def bgr(self) -> Optional[np.ndarray]:
    if self._bgr is None:
      ok, frame = self.capture.retrieve()
      self._bgr = frame if ok else None
    return self._bgr

  def rgb(self, size: Tuple[int, int]) -> Optional[np.ndarray]:
    frame = self.bgr()
    return None if frame is None else resizer(size)(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

  def snapshot(self) -> Callable[[], Optional[np.ndarray]]:
    frame = self.bgr()  # OpenCV delivers it whole and in BGR already
    return lambda: frame

  def release(self) -> None:
    self.capture.release()


def check_source(spec: str) -> None:
  """Fails fast (before the model loads) on a source that cannot be one."""
  if os.path.exists(spec):
    video_reader.probe(spec)  # raises VideoReadError with the reason
  elif not spec.isdigit() and '://' not in spec:
    raise video_reader.VideoReadError(f'{spec}: no such file, and not a stream URL '
                                      '(rtsp://, http(s)://) or a webcam index')


def check_cameras(cameras: Sequence[Camera]) -> None:
  """`check_source` on each; a named camera's reason starts with its name."""
  for camera in cameras:
    try:
      check_source(camera.source)
    except video_reader.VideoReadError as e:
      raise video_reader.VideoReadError(f'{camera.name}: {e}' if camera.name else str(e)) from None


class Source:
  """Frames with their stream time; a live source that drops is reopened with backoff.

  File: stream time from the frame index and the file's fps; ends at the end of the file.
  Live (webcam index, URL): stream time is the wall time since the first frame, gaps included.
  `lenient` (a camera among several): a live source is opened on its first `grab` (on its
  camera's thread), and one that cannot be opened is retried as a dropped one, not raised.
  """

  def __init__(self, spec: str, reconnect_s: float = 30.0, realtime: bool = False,
               log: Callable[[str], None] = print, stop_at: float = float('inf'),
               name: str = '', lenient: bool = False):
    self.spec, self.reconnect_s, self.log = spec, reconnect_s, log
    self.label = f'{name} ({spec})' if name else spec  # in log lines
    self.stop_at = stop_at  # time.monotonic() after which no reconnection is tried
    self.live = not os.path.exists(spec)
    self.realtime = realtime and not self.live
    self.lenient = lenient and self.live
    self.reconnects = 0
    self.gave_up = False  # a live source lost for good
    self.due = 0.0  # time.monotonic() the last frame was due (a realtime file) or was read
    if self.live:
      cv2.setLogLevel(0)  # a webcam's failed reconnection tries: our one line each, not OpenCV's
    self._capture = None
    self._index, self._t0, self._fps = 0, None, sampling.DEFAULT_FPS
    self._unopened = self.lenient
    if not self._unopened:
      self._open()  # a source that cannot be opened at all fails now, with the reason

  def _open(self) -> bool:
    if self.spec.isdigit():
      capture = WebcamFrames(int(self.spec))
      if not capture.opened():
        capture.release()
        capture = None
    elif self.live:
      capture = video_reader.FrameStream.open_url(self.spec, timeout_s=5.0)
    else:
      capture = video_reader.FrameStream.open_file(self.spec)  # VideoReadError: the reason
    if capture is None:
      if (self._capture is None and self.reconnects == 0 and self._t0 is None
          and not self.lenient):
        raise video_reader.VideoReadError(f'{self.spec}: cannot open the source')
      return False
    self._capture = capture
    self._fps = capture.fps or sampling.DEFAULT_FPS
    return True

  @property
  def fps(self) -> float:
    """The rate the source reports (25 when it reports none)."""
    return self._fps

  def open_now(self) -> None:
    """Opens a `lenient` source not opened yet (one try; `grab` retries as on a drop)."""
    if self._unopened:
      self._unopened = False
      self._open()

  def grab(self) -> Tuple[bool, float, bool]:
    """Decodes the next frame without converting it: (False at the end, stream time in s,
    True if the stream restarted). `rgb` converts it, for the frames that are kept."""
    self.open_now()
    restarted = False
    while True:
      ok = self._capture.grab() if self._capture is not None else False
      if ok:
        return True, self._stamp(), restarted
      if not self.live or not self._reopen():
        return False, 0.0, False
      restarted = True

  def rgb(self, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """The grabbed frame, RGB uint8 [*size, 3] as ingestion stores it (None if it cannot be
    converted)."""
    return self._capture.rgb(size)

  def snapshot(self) -> Callable[[], Optional[np.ndarray]]:
    """The grabbed frame, whole: a call gives it in BGR (converted then, only for the frames
    an event shows)."""
    return self._capture.snapshot()

  def _stamp(self) -> float:
    now = time.monotonic()
    if self._t0 is None:
      self._t0 = now
    if self.live:
      self.due = now
      return now - self._t0
    t = self._index / self._fps
    self._index += 1
    if self.realtime and t > now - self._t0:
      time.sleep(t - (now - self._t0))
    self.due = self._t0 + t if self.realtime else now
    return t

  def _reopen(self) -> bool:
    """Backoff 0.5, 1, 2, … 8 s between tries, for at most `reconnect_s` seconds."""
    if self._capture is not None:
      self._capture.release()
      self._capture = None
    deadline, delay = min(time.monotonic() + self.reconnect_s, self.stop_at), 0.5
    while time.monotonic() < deadline:
      self.log(f'watch: {self.label}: no frames; reconnecting in {delay:g} s')
      time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
      self.reconnects += 1
      if self._open():
        self.log(f'watch: {self.label}: reconnected')
        return True
      delay = min(delay * 2, 8.0)
    self.log(f'watch: {self.label}: gave up after {self.reconnect_s:g} s without frames')
    self.gave_up = True
    return False

  def release(self) -> None:
    if self._capture is not None:
      self._capture.release()


@dataclasses.dataclass
class Window:
  frames: np.ndarray  # [T, H, W, 3] uint8 RGB, as ingestion stores clips
  start_s: float
  end_s: float
  captured: float  # time.monotonic() when its last frame was read
  wall: float  # time.time() when its last frame was read
  snapshot: Callable[[], Optional[np.ndarray]]  # the last frame, full size, BGR, when called
  score: Optional[float] = None


class Mailbox:
  """A one-place handoff between a camera's capture and the scorer; the mailboxes of several
  cameras share one condition, so that the scorer can wait for any of them (`collect`)."""

  def __init__(self, cond: Optional[threading.Condition] = None):
    self._cond = cond or threading.Condition()
    self._item: Optional[Window] = None
    self._closed = False
    self.replaced = 0

  def put(self, item: Window, wait: bool) -> None:
    with self._cond:
      if wait:
        self._cond.wait_for(lambda: self._item is None)
      elif self._item is not None:
        self.replaced += 1
      self._item = item
      self._cond.notify_all()

  def get(self) -> Optional[Window]:
    """The next window, or None once closed and empty."""
    taken = collect([self])
    return taken[0][1] if taken else None

  def close(self) -> None:
    with self._cond:
      self._closed = True
      self._cond.notify_all()


def collect(boxes: List[Mailbox]) -> Optional[List[Tuple[int, Window]]]:
  """Waits for a window in any of `boxes` (one shared condition), then takes every window
  waiting: [(box index, window)], at most one per box; None once all are closed and empty."""
  # pylint: disable=protected-access
  cond = boxes[0]._cond
  with cond:
    cond.wait_for(lambda: any(b._item is not None for b in boxes) or all(b._closed
                                                                         for b in boxes))
    taken = [(i, b._item) for i, b in enumerate(boxes) if b._item is not None]
    for b in boxes:
      b._item = None
    cond.notify_all()
    return taken or None


# --- deciding --------------------------------------------------------------------------------
def _iso(unix: float) -> str:
  return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).isoformat(
      timespec='milliseconds')


class Detector:
  """Smoothed scores → events, with hysteresis and a minimum event length.

  The event spans the windows whose own score reached the start threshold: from the first one
  among the last k windows when the smoothed score crossed, to the last one before it fell
  below the stop threshold.
  """

  def __init__(self, config: WatchConfig, emit: Callable[[Dict[str, Any], Window], None]):
    self.c, self.emit = config, emit
    self._recent: Deque[Window] = collections.deque(maxlen=max(1, config.average))
    self._ema: Optional[float] = None
    self._event: Optional[Dict[str, Any]] = None
    self._peak: Optional[Window] = None
    self._confirmed = False
    self.count = 0

  def smoothed(self, w: Window) -> float:
    if self.c.ema > 0:
      self._ema = w.score if self._ema is None else (
          self.c.ema * w.score + (1 - self.c.ema) * self._ema)
      return self._ema
    return float(np.mean([x.score for x in self._recent]))

  def update(self, w: Window) -> None:
    self._recent.append(w)
    level = self.smoothed(w)
    if self._event is None and level >= self.c.start_threshold:
      above = [x for x in self._recent if x.score >= self.c.start_threshold] or [w]
      # Stream time → wall clock, fixed when the event opens: its records agree on its times.
      self._event = {'start_s': above[0].start_s, 'end_s': above[-1].end_s,
                     'offset': w.wall - w.end_s}
      self._peak = max(above, key=lambda x: x.score)
    elif self._event is not None:
      if w.score >= self.c.start_threshold:
        self._event['end_s'] = w.end_s
      if w.score > self._peak.score:
        self._peak = w
    if self._event is None:
      return
    length = self._event['end_s'] - self._event['start_s']
    if not self._confirmed and length >= self.c.min_event_s:
      self._confirm()
      self.emit(self._record('start', w, level), self._peak)
    if level < self.c.stop_threshold:
      self.finish(w, level)

  def finish(self, w: Optional[Window] = None, level: Optional[float] = None) -> None:
    """Closes an open event (below the stop threshold, or the stream ended)."""
    if self._event is None:
      return
    w = w or self._recent[-1]
    length = self._event['end_s'] - self._event['start_s']
    if not self._confirmed and length >= self.c.min_event_s:
      self._confirm()
      self.emit(self._record('start', w, level), self._peak)
    if self._confirmed:
      self.emit(self._record('end', w, level), self._peak)
    self._event, self._peak, self._confirmed = None, None, False

  def _confirm(self) -> None:
    self.count += 1
    self._event['id'] = self.count
    self._confirmed = True

  def _record(self, kind: str, w: Window, level: Optional[float]) -> Dict[str, Any]:
    e = self._event
    record = {'event': kind, 'id': e['id'], 'start_s': round(e['start_s'], 3),
              'start_wall': _iso(e['offset'] + e['start_s'])}
    if kind == 'end':
      record.update(end_s=round(e['end_s'], 3), end_wall=_iso(e['offset'] + e['end_s']),
                    duration_s=round(e['end_s'] - e['start_s'], 3))
    record.update(peak_score=round(self._peak.score, 4), peak_s=round(self._peak.end_s, 3),
                  stream_s=round(w.end_s, 3), wall=_iso(w.wall),
                  score=None if level is None else round(level, 4))
    return record


# --- reporting -------------------------------------------------------------------------------
class Webhook:
  """POSTs events as JSON from its own thread: bounded queue, bounded retries with backoff.

  Every event posted is counted once: `sent`, `failed` (after its retries), or `dropped` (the
  queue was full, or it was still waiting when `close`'s deadline came); each loss is logged.
  """

  def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 3, capacity: int = 256,
               log: Callable[[str], None] = print):
    self.url, self.timeout_s, self.retries, self.log = url, timeout_s, retries, log
    self._queue: 'queue.Queue[Optional[Dict[str, Any]]]' = queue.Queue(maxsize=capacity)
    self.sent = self.failed = self.dropped = 0
    self._pending: List[Dict[str, Any]] = []  # posted, outcome not known yet
    self._lock = threading.Lock()
    self._closed = False
    self._thread = threading.Thread(target=self._run, daemon=True, name=f'webhook {url}')
    self._thread.start()

  def post(self, event: Dict[str, Any]) -> None:
    with self._lock:
      self._pending.append(event)
    try:
      self._queue.put_nowait(event)
    except queue.Full:
      self._settle(event, 'dropped', 'the queue is full')

  def _settle(self, event: Dict[str, Any], outcome: str, why: str = '') -> None:
    """Counts an event's outcome once (none after `close` gave up on it)."""
    with self._lock:
      if self._closed or not any(e is event for e in self._pending):
        return
      self._pending = [e for e in self._pending if e is not event]
      setattr(self, outcome, getattr(self, outcome) + 1)
    if outcome != 'sent':
      self.log(f'watch: webhook {self.url}: event {event.get("id")} {event.get("event")} '
               f'{outcome}: {why}')

  def _run(self) -> None:
    while True:
      event = self._queue.get()
      if event is None:
        return
      body = json.dumps(event).encode()
      for attempt in range(self.retries + 1):
        try:
          request = urllib.request.Request(self.url, data=body, method='POST',
                                           headers={'Content-Type': 'application/json'})
          with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
            reply.read()
          self._settle(event, 'sent')
          break
        except Exception as e:  # pylint: disable=broad-except
          if attempt == self.retries:
            self._settle(event, 'failed', f'not delivered after {attempt + 1} tries ({e})')
          else:
            time.sleep(0.5 * 2**attempt)

  def close(self, deadline: float) -> None:
    """Lets queued events go out until `deadline` (monotonic); what is still waiting then is
    counted as dropped at shutdown (a stuck hook is abandoned)."""
    try:
      self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
      self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Full:
      pass
    for event in list(self._pending):
      self._settle(event, 'dropped', 'still undelivered at shutdown')
    with self._lock:
      self._closed = True


class EventLog:
  """Events → JSON lines on stdout, a JPEG of the peak frame, and the webhooks; a named
  camera's records start with `"camera": name`."""

  def __init__(self, out_dir: str, webhooks: List[Webhook], stdout=None, camera: str = ''):
    self.out_dir, self.webhooks, self.camera = out_dir, webhooks, camera
    self.stdout = stdout or sys.stdout
    self._lock = threading.Lock()

  def __call__(self, record: Dict[str, Any], peak: Window) -> None:
    suffix = '' if record['event'] == 'end' else '-start'
    path = os.path.join(self.out_dir, f'event-{record["id"]:04d}{suffix}.jpg')
    image = peak.snapshot()
    record['snapshot'] = path if image is not None and cv2.imwrite(path, image) else ''
    if self.camera:
      record = {'camera': self.camera, **record}
    with self._lock:
      print(json.dumps(record), file=self.stdout, flush=True)
    for hook in self.webhooks:
      hook.post(record)


class Stats:
  """Frames read, windows scored / dropped, capture → score latency (bounded samples)."""

  def __init__(self, capacity: int = 100_000):
    self.frames = self.sampled = self.scored = 0
    self.latencies: Deque[float] = collections.deque(maxlen=capacity)
    self.started = time.monotonic()
    self.stream_s = 0.0

  def summary(self, dropped_windows: int, stride: int, reconnects: int) -> Dict[str, Any]:
    wall = max(1e-9, time.monotonic() - self.started)
    lat = np.array(self.latencies) if self.latencies else np.zeros(1)
    return {'event': 'summary', 'wall_s': round(wall, 2), 'stream_s': round(self.stream_s, 2),
            'stream_s_per_wall_s': round(self.stream_s / wall, 3),
            'frames_read': self.frames, 'fps': round(self.frames / wall, 2),
            'windows_scored': self.scored, 'windows_dropped': dropped_windows,
            'frames_dropped': dropped_windows * stride, 'reconnects': reconnects,
            'latency_p50_s': round(float(np.percentile(lat, 50)), 4),
            'latency_p95_s': round(float(np.percentile(lat, 95)), 4)}


# --- the loop --------------------------------------------------------------------------------
class Scorer:
  """The model on a batch of windows (one per camera at most) in one call: a SavedModel or a
  `.tflite` model (`model_scorer`: frames JPEG-encoded at the model's ingestion quality, as
  serving sees a clip); P(positive class) of each window."""

  def __init__(self, model_dir: str, clip_shape: Tuple[int, int, int],
               clips: Optional[model_scorer.ClipScorer] = None, max_batch: int = 1):
    self._clips = clips or model_scorer.load_scorer(model_dir)
    blank = np.zeros(clip_shape + (3,), np.uint8)  # [T, H, W, 3]
    self._clips.prepare(max_batch)  # one batch of every camera: no wait for it mid-stream
    self(Window(blank, 0.0, 0.0, 0.0, 0.0, lambda: blank[0]))  # warm up: the first window

  @property
  def clip(self):
    """The model's clip config (`ModelClipConfig`)."""
    return self._clips.clip

  def score(self, windows: List[Window]) -> List[float]:
    rows = self._clips(np.stack([w.frames for w in windows]))  # [B, T, H, W, 3] → [B, P]
    return [self._clips.clip.positive_score(p) for p in rows]

  def __call__(self, w: Window) -> float:
    return self.score([w])[0]


class Capture:
  """One camera on its own thread: source → sampler (every stride-th frame: the model's clip
  rule) → ring of T frames → a window every stride into its mailbox; its detector, events
  and stats. Ends at the end of a file, a live source lost for good, `stop` or `stop_at`."""

  def __init__(self, camera: Camera, config: WatchConfig, rule: Tuple[int, Tuple[int, int], float],
               cond: threading.Condition, stop: threading.Event, stop_at: float,
               log: Callable[[str], None]):
    self.name, self.config, self.stop, self.stop_at, self.log = (camera.name, config, stop,
                                                                 stop_at, log)
    self.num_frames, self.size, self.fps = rule
    self.source = Source(camera.source, config.reconnect_s, config.realtime, log, stop_at,
                         name=camera.name, lenient=bool(camera.name))
    self.sampler: Optional[sampling.StreamSampler] = None  # set when the source is open
    self.stride = 0  # sampled frames between windows: set when the source is open (`run`)
    self.mailbox, self.stats = Mailbox(cond), Stats()
    self.detector: Optional[Detector] = None  # set by `report_to`
    self.drift: Optional[watch_drift.CameraDrift] = None  # set when drift is checked
    self.snapshots = ''
    self.error, self.failure = '', None

  def report_to(self, run_dir: str, hooks: List[Webhook], stdout) -> None:
    """Events of this camera: snapshots in `run_dir` (a named camera: `run_dir`/name)."""
    self.snapshots = os.path.join(run_dir, self.name) if self.name else run_dir
    os.makedirs(self.snapshots, exist_ok=True)
    self.detector = Detector(self.config, EventLog(self.snapshots, hooks, stdout, self.name))

  def run(self) -> None:
    """The capture loop; an unexpected error ends this camera only (logged, in its summary)."""
    try:
      s = self.source
      s.open_now()
      self.sampler = sampling.StreamSampler(self.fps, s.fps)  # every stride-th source frame
      self.stride = max(1, int(round(self.config.stride_s * self.sampler.fps)))
      self.log(f'watch: {s.label} ({"live" if s.live else "file"}): {self.num_frames} frames at '
               f'{self.sampler.fps:g} fps (every {self.sampler.stride} of {s.fps:g} fps) per '
               f'window, scored every {self.stride} sampled frames; snapshots in '
               f'{self.snapshots}')
      self._loop()
    except Exception as e:  # pylint: disable=broad-except
      self.failure, self.error = e, f'{type(e).__name__}: {e}'
      self.log(f'watch: {self.source.label}: stopped: {self.error}')
    finally:
      self.source.release()
      self.mailbox.close()

  def _loop(self) -> None:
    ring = collections.deque(maxlen=self.num_frames)
    new_frames, source = 0, self.source
    while not self.stop.is_set() and time.monotonic() < self.stop_at:
      ok, t, restarted = source.grab()
      if not ok:
        return
      if restarted:  # frames across a gap are not one clip
        ring.clear()
        self.sampler = sampling.StreamSampler(self.fps, source.fps)  # the reopened source's rate
      self.stats.frames += 1
      self.stats.stream_s = t
      if not self.sampler.keep(t):
        continue  # decoded, never converted
      rgb = source.rgb(self.size)
      if rgb is None:
        continue
      ring.append((rgb, t))
      new_frames += 1
      if len(ring) == self.num_frames and new_frames >= self.stride:
        new_frames = 0
        self.mailbox.put(Window(np.stack([f for f, _ in ring]), ring[0][1],
                                t + 1 / self.sampler.fps, source.due, time.time(),
                                source.snapshot()), wait=not source.live)

  def summary(self) -> Dict[str, Any]:
    summary = self.stats.summary(self.mailbox.replaced, self.stride, self.source.reconnects)
    if self.drift:
      summary['drift'] = self.drift.check.summary(self.name)
    if self.name:
      summary = {'event': 'summary', 'camera': self.name, 'source': self.source.spec,
                 **{k: v for k, v in summary.items() if k != 'event'},
                 'gave_up': self.source.gave_up, 'events': self.detector.count,
                 'snapshots': self.snapshots}
      if self.error:
        summary['error'] = self.error
    return summary


class BatchLoop:
  """The scorer thread: every window waiting (one per camera at most) in one model call,
  then each camera's latency, stats and detector. If scoring fails, every camera is stopped
  (`stop`) and the windows still coming are let go, so that no capture waits for ever."""

  def __init__(self, scorer: Scorer, captures: List[Capture], stop: threading.Event):
    self.scorer, self.captures, self.stop = scorer, captures, stop
    self.batches = self.windows = 0
    self.error = ''
    self._thread = threading.Thread(target=self._run, daemon=True, name='scorer')
    self._thread.start()

  def _run(self) -> None:
    boxes = [c.mailbox for c in self.captures]
    while True:
      taken = collect(boxes)
      if taken is None:
        return
      if self.error:
        continue
      try:
        self._score(taken)
      except Exception as e:  # pylint: disable=broad-except
        self.error = f'{type(e).__name__}: {e}'
        self.stop.set()

  def _score(self, taken: List[Tuple[int, Window]]) -> None:
    scores = self.scorer.score([w for _, w in taken])
    self.batches, self.windows = self.batches + 1, self.windows + len(taken)
    for (i, w), score in zip(taken, scores):
      c = self.captures[i]
      w.score = score
      c.stats.latencies.append(time.monotonic() - w.captured)
      c.stats.scored += 1
      c.detector.update(w)
      if c.drift:
        c.drift.add(w.frames, score, w.start_s, w.end_s, w.wall)

  def join(self) -> None:
    self._thread.join()


def _one_line(summary: Dict[str, Any], events: int) -> str:
  name = f'{summary["camera"]}: ' if 'camera' in summary else ''
  return (f'watch: {name}{summary["frames_read"]} frames in {summary["wall_s"]} s '
          f'({summary["fps"]} fps, {summary["stream_s_per_wall_s"]} stream s per wall s); '
          f'{summary["windows_scored"]} windows scored, {summary["frames_dropped"]} sampled '
          f'frames dropped ({summary["windows_dropped"]} windows); capture→score latency p50 '
          f'{summary["latency_p50_s"] * 1000:.0f} ms, p95 {summary["latency_p95_s"] * 1000:.0f}'
          f' ms; {events} event(s)')


def watch(config: WatchConfig, stdout=None, log: Callable[[str], None] = None,
          scorer: Optional[Scorer] = None) -> Dict[str, Any]:
  """Runs until every source has ended (a file's end, a live source lost for good), Ctrl-C
  or `max_seconds`. One unnamed source: its summary; named cameras (`config.cameras`): the
  summary of all, with each camera's under 'per_camera' (each also printed)."""
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  stdout = stdout or sys.stdout
  cameras = cameras_of(config)
  watch_drift.check_settings(config)
  check_cameras(cameras)
  num_frames, size, fps, note = sampling_rule(config.model_dir)
  if note:
    log(f'watch: {note}')
  scorer = scorer or Scorer(config.model_dir, (num_frames,) + size, max_batch=len(cameras))
  started = time.monotonic()
  stop_at = started + config.max_seconds if config.max_seconds else float('inf')
  cond, stop = threading.Condition(), threading.Event()
  captures = [Capture(c, config, (num_frames, size, fps), cond, stop, stop_at, log)
              for c in cameras]
  run_dir = os.path.join(config.out_dir, datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f'))
  os.makedirs(run_dir)
  hooks = [Webhook(u, config.webhook_timeout_s, config.webhook_retries, log=log)
           for u in config.webhooks]
  for c in captures:
    c.report_to(run_dir, hooks, stdout)
  checker = watch_drift.start(config.model_dir, config, stdout, log)
  if checker:
    for c in captures:
      c.drift = watch_drift.CameraDrift(c.name, checker, config.drift_windows,
                                        config.drift_interval_s, scorer.clip.jpeg_quality)
  loop = BatchLoop(scorer, captures, stop)
  threads = [threading.Thread(target=c.run, daemon=True, name=f'capture {c.name}')
             for c in captures]
  try:
    for t in threads:
      t.start()
    for t in threads:
      while t.is_alive():
        t.join(0.2)
  except KeyboardInterrupt:
    log('watch: interrupted')
  finally:
    stop.set()
    for t in threads:
      t.join()
    loop.join()
    if checker:
      checker.close()
    for c in captures:
      c.detector.finish()
    deadline = time.monotonic() + min(5.0, config.webhook_timeout_s)
    for hook in hooks:
      hook.close(deadline)
  if loop.error:
    raise ValueError(f'scoring failed, every camera stopped: {loop.error}')
  webhooks = [{'url': h.url, 'sent': h.sent, 'failed': h.failed, 'dropped': h.dropped}
              for h in hooks]
  per_camera = [c.summary() for c in captures]
  if not cameras[0].name:
    if captures[0].failure is not None:
      raise captures[0].failure  # one unnamed source: as before threads, its error is ours
    summary = {**per_camera[0], 'webhooks': webhooks, 'snapshots': run_dir}
    print(json.dumps(summary), file=stdout, flush=True)
    log(_one_line(summary, captures[0].detector.count))
    return summary
  for s, c in zip(per_camera, captures):
    print(json.dumps(s), file=stdout, flush=True)
    log(_one_line(s, c.detector.count))
  wall = max(1e-9, time.monotonic() - started)
  summary = {'event': 'summary', 'cameras': len(captures), 'wall_s': round(wall, 2),
             'frames_read': sum(s['frames_read'] for s in per_camera),
             'windows_scored': loop.windows, 'model_calls': loop.batches,
             'mean_batch': round(loop.windows / max(1, loop.batches), 2),
             'failed': [c.name for c in captures if c.error], 'webhooks': webhooks,
             'snapshots': run_dir}
  print(json.dumps(summary), file=stdout, flush=True)
  log(f'watch: {len(captures)} cameras, {summary["windows_scored"]} windows in '
      f'{summary["model_calls"]} model calls (mean batch {summary["mean_batch"]})')
  return {**summary, 'per_camera': per_camera}
