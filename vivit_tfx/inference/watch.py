"""`vivit-tfx watch SOURCE`: live violence detection on a camera, a stream or a file.

Capture (main thread) → sampler (every stride-th source frame: the model's clip rule,
`sampling.StreamSampler`) → ring buffer of T frames → every stride, a window goes to the scorer
thread through a one-place mailbox: on a live source a new window replaces one the scorer has
not taken yet (capture never waits; the replaced window is counted as dropped), on a file
capture waits (nothing is lost). Scores are smoothed (mean of the last k windows or an EMA) and
turned into events with hysteresis (start / stop thresholds and a minimum length). Events go
to stdout as JSON lines, with a JPEG of the peak frame, and to webhooks, each on its own thread
with bounded retries and a bounded queue.

Memory: the ring (T small frames), one window in the mailbox and one being scored, the frames
of the last k windows for the peak snapshot, and bounded latency samples — not the stream.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import os
import queue
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from vivit_tfx.data import clip_example, sampling, video_reader
from vivit_tfx.data.frames import resize_and_crop_array
from vivit_tfx.inference import predict

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
def check_source(spec: str) -> None:
  """Fails fast (before the model loads) on a source that cannot be one."""
  if os.path.exists(spec):
    video_reader.probe(spec)  # raises VideoReadError with the reason
  elif not spec.isdigit() and '://' not in spec:
    raise video_reader.VideoReadError(f'{spec}: no such file, and not a stream URL '
                                      '(rtsp://, http(s)://) or a webcam index')


class Source:
  """Frames with their stream time; a live source that drops is reopened with backoff.

  File: stream time from the frame index and the file's fps; ends at the end of the file.
  Live (webcam index, URL): stream time is the wall time since the first frame, gaps included.
  """

  def __init__(self, spec: str, reconnect_s: float = 30.0, realtime: bool = False,
               log: Callable[[str], None] = print, stop_at: float = float('inf')):
    self.spec, self.reconnect_s, self.log = spec, reconnect_s, log
    self.stop_at = stop_at  # time.monotonic() after which no reconnection is tried
    self.live = not os.path.exists(spec)
    self.realtime = realtime and not self.live
    self.reconnects = 0
    if self.live:
      cv2.setLogLevel(0)  # failed reconnection tries: our one line each, not OpenCV's warnings
    self._capture = None
    self._index, self._t0, self._fps = 0, None, sampling.DEFAULT_FPS
    self._open()  # a source that cannot be opened at all fails now, with the reason

  def _open(self) -> bool:
    if self.spec.isdigit():
      capture = cv2.VideoCapture(int(self.spec))
    elif self.live:
      capture = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [
          cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000])
    else:
      capture = video_reader.open_video(self.spec)  # raises VideoReadError with the reason
    if not capture.isOpened():
      capture.release()
      if self._capture is None and self.reconnects == 0 and self._t0 is None:
        raise video_reader.VideoReadError(f'{self.spec}: cannot open the source')
      return False
    self._capture = capture
    self._fps = capture.get(cv2.CAP_PROP_FPS) or sampling.DEFAULT_FPS
    return True

  @property
  def fps(self) -> float:
    """The rate the source reports (25 when it reports none)."""
    return self._fps

  def read(self) -> Tuple[Optional[np.ndarray], float, bool]:
    """(BGR frame or None at the end, stream time in s, True if the stream restarted)."""
    restarted = False
    while True:
      ok, frame = self._capture.read() if self._capture is not None else (False, None)
      if ok:
        return frame, self._stamp(), restarted
      if not self.live:
        return None, 0.0, False
      if not self._reopen():
        return None, 0.0, False
      restarted = True

  def _stamp(self) -> float:
    now = time.monotonic()
    if self._t0 is None:
      self._t0 = now
    if self.live:
      return now - self._t0
    t = self._index / self._fps
    self._index += 1
    if self.realtime and t > now - self._t0:
      time.sleep(t - (now - self._t0))
    return t

  def _reopen(self) -> bool:
    """Backoff 0.5, 1, 2, … 8 s between tries, for at most `reconnect_s` seconds."""
    if self._capture is not None:
      self._capture.release()
      self._capture = None
    deadline, delay = min(time.monotonic() + self.reconnect_s, self.stop_at), 0.5
    while time.monotonic() < deadline:
      self.log(f'watch: {self.spec}: no frames; reconnecting in {delay:g} s')
      time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
      self.reconnects += 1
      if self._open():
        self.log(f'watch: {self.spec}: reconnected')
        return True
      delay = min(delay * 2, 8.0)
    self.log(f'watch: {self.spec}: gave up after {self.reconnect_s:g} s without frames')
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
  snapshot: np.ndarray  # the last frame, full size, BGR
  score: Optional[float] = None


class Mailbox:
  """A one-place handoff between capture and the scorer."""

  def __init__(self):
    self._cond = threading.Condition()
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
    with self._cond:
      self._cond.wait_for(lambda: self._item is not None or self._closed)
      item, self._item = self._item, None
      self._cond.notify_all()
      return item

  def close(self) -> None:
    with self._cond:
      self._closed = True
      self._cond.notify_all()


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
  """Events → JSON lines on stdout, a JPEG of the peak frame, and the webhooks."""

  def __init__(self, out_dir: str, webhooks: List[Webhook], stdout=None):
    self.out_dir, self.webhooks = out_dir, webhooks
    self.stdout = stdout or sys.stdout
    self._lock = threading.Lock()

  def __call__(self, record: Dict[str, Any], peak: Window) -> None:
    suffix = '' if record['event'] == 'end' else '-start'
    path = os.path.join(self.out_dir, f'event-{record["id"]:04d}{suffix}.jpg')
    cv2.imwrite(path, peak.snapshot)
    record['snapshot'] = path
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
  """The model's serving signature on one window at a time, on its own thread."""

  def __init__(self, model_dir: str, clip_shape: Tuple[int, int, int], jpeg_quality: int = 90):
    self._serve = predict.saved_model(model_dir).signatures['serving_default']
    self._clip = predict.clip_config_of(model_dir)  # its positive class
    self.jpeg_quality = jpeg_quality
    blank = np.zeros(clip_shape + (3,), np.uint8)  # [T, H, W, 3]
    self(Window(blank, 0.0, 0.0, 0.0, 0.0, blank[0]))  # warm up before the first real window

  def __call__(self, w: Window) -> float:
    t, h, wd = w.frames.shape[:3]
    info = video_reader.VideoInfo(num_frames=t, fps=0.0, width=wd, height=h)
    example = clip_example.clip_to_example(video_reader.Clip(w.frames, info, list(range(t))), 0,
                                           'watch', 'watch', self.jpeg_quality)
    p = self._serve(examples=tf.constant([example.SerializeToString()]))[
        'probabilities'].numpy()[0]
    return self._clip.positive_score(p)


def watch(config: WatchConfig, stdout=None, log: Callable[[str], None] = None) -> Dict[str, Any]:
  """Runs until the end of a file, Ctrl-C, `max_seconds` or a live source lost for good."""
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  stdout = stdout or sys.stdout
  check_source(config.source)
  num_frames, size, fps, note = sampling_rule(config.model_dir)
  if note:
    log(f'watch: {note}')
  scorer = Scorer(config.model_dir, (num_frames,) + size)
  stop_at = time.monotonic() + config.max_seconds if config.max_seconds else float('inf')
  source = Source(config.source, config.reconnect_s, config.realtime, log, stop_at)
  sampler = sampling.StreamSampler(fps, source.fps)  # every stride-th frame of the source
  stride = max(1, int(round(config.stride_s * sampler.fps)))
  run_dir = os.path.join(config.out_dir, datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f'))
  os.makedirs(run_dir)
  hooks = [Webhook(u, config.webhook_timeout_s, config.webhook_retries, log=log)
           for u in config.webhooks]
  events = EventLog(run_dir, hooks, stdout)
  detector = Detector(config, events)
  mailbox, stats = Mailbox(), Stats()
  log(f'watch: {config.source} ({"live" if source.live else "file"}): {num_frames} frames at '
      f'{sampler.fps:g} fps (every {sampler.stride} of {source.fps:g} fps) per window, '
      f'scored every {stride} sampled frames; snapshots in {run_dir}')

  def score_loop():
    while True:
      w = mailbox.get()
      if w is None:
        return
      w.score = scorer(w)
      stats.latencies.append(time.monotonic() - w.captured)
      stats.scored += 1
      detector.update(w)

  worker = threading.Thread(target=score_loop, daemon=True, name='scorer')
  worker.start()
  ring = collections.deque(maxlen=num_frames)
  new_frames = 0
  try:
    while not config.max_seconds or time.monotonic() - stats.started < config.max_seconds:
      frame, t, restarted = source.read()
      if frame is None:
        break
      if restarted:  # frames across a gap are not one clip
        ring.clear()
        sampler = sampling.StreamSampler(fps, source.fps)  # the reopened source's rate
      stats.frames += 1
      stats.stream_s = t
      if not sampler.keep(t):
        continue
      rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      ring.append((resize_and_crop_array(rgb, size), t))
      new_frames += 1
      if len(ring) == num_frames and new_frames >= stride:
        new_frames = 0
        mailbox.put(Window(np.stack([f for f, _ in ring]), ring[0][1], t + 1 / sampler.fps,
                           time.monotonic(), time.time(), frame), wait=not source.live)
  except KeyboardInterrupt:
    log('watch: interrupted')
  finally:
    source.release()
    mailbox.close()
    worker.join()
    detector.finish()
    deadline = time.monotonic() + min(5.0, config.webhook_timeout_s)
    for hook in hooks:
      hook.close(deadline)
  summary = stats.summary(mailbox.replaced, stride, source.reconnects)
  summary['webhooks'] = [{'url': h.url, 'sent': h.sent, 'failed': h.failed,
                          'dropped': h.dropped} for h in hooks]
  summary['snapshots'] = run_dir
  print(json.dumps(summary), file=stdout, flush=True)
  log(f'watch: {summary["frames_read"]} frames in {summary["wall_s"]} s ({summary["fps"]} fps, '
      f'{summary["stream_s_per_wall_s"]} stream s per wall s); {summary["windows_scored"]} '
      f'windows scored, {summary["frames_dropped"]} sampled frames dropped '
      f'({summary["windows_dropped"]} windows); capture→score latency p50 '
      f'{summary["latency_p50_s"] * 1000:.0f} ms, p95 {summary["latency_p95_s"] * 1000:.0f} ms; '
      f'{detector.count} event(s)')
  return summary
