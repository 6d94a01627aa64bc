"""`watch`'s drift check: does what a camera sees still look like the training split?

Each scored window's summary features (`drift_stats.clip_features` and its score) enter its
camera's sliding window of the last `drift_windows` windows (`CameraDrift`). Once that is full,
and then every `drift_interval_s` seconds of stream time, its TFDV statistics are compared with
the training split's statistics the model carries (`drift_stats.model_reference`, written by
the Trainer's export) by TFDV's Jensen-Shannon divergence comparator at `drift_threshold`
(`DriftCheck`, on a thread of its own: TFDV takes seconds to load, and neither that nor a check
holds up scoring). A drifted feature gets one log line and one JSON record
(`"event": "drift"`) per check: at most one per feature and camera per interval.
"""
from __future__ import annotations

import collections
import datetime
import json
import queue
import threading
from typing import Any, Callable, Dict, List, Optional

from vivit_tfx.data import drift_stats


class DriftCheck:
  """The cameras' checks, one at a time on one thread; what drifted goes to `log` and
  `stdout`. A check that cannot keep up (its queue full) is skipped and counted."""

  def __init__(self, reference, threshold: float, log: Callable[[str], None], stdout,
               capacity: int = 8):
    self.reference, self.threshold, self.log, self.stdout = reference, threshold, log, stdout
    self.checks: Dict[str, int] = collections.Counter()  # per camera
    self.skipped = 0
    self.drifted: Dict[str, Dict[str, int]] = collections.defaultdict(collections.Counter)
    self.error = ''
    self._lock = threading.Lock()  # stdout: shared with the cameras' event logs
    self._queue: 'queue.Queue[Optional[Dict[str, Any]]]' = queue.Queue(maxsize=capacity)
    self._thread = threading.Thread(target=self._run, daemon=True, name='drift')
    self._thread.start()

  def submit(self, camera: str, rows: List[Dict[str, float]], start_s: float, end_s: float,
             wall: float) -> None:
    """Checks a camera's window of rows ({feature: value} per scored window) later."""
    try:
      self._queue.put_nowait({'camera': camera, 'rows': rows, 'start_s': start_s,
                              'end_s': end_s, 'wall': wall})
    except queue.Full:
      self.skipped += 1

  def _run(self) -> None:
    while True:
      item = self._queue.get()
      if item is None:
        return
      if self.error:
        continue
      try:
        self._check(item)
      except Exception as e:  # pylint: disable=broad-except  # the watch goes on without it
        self.error = f'{type(e).__name__}: {e}'.splitlines()[0]
        self.log(f'watch: drift: checks stopped: {self.error}')

  def _check(self, item: Dict[str, Any]) -> None:
    columns = {f: [row[f] for row in item['rows']] for f in drift_stats.FEATURES}
    entries = drift_stats.compare(drift_stats.statistics(columns), self.reference,
                                  self.threshold)
    name = item['camera']
    self.checks[name] += 1
    for e in entries:
      if not e['drifted']:
        continue
      self.drifted[name][e['feature']] += 1
      self.log(f'watch: {name + ": " if name else ""}{drift_stats.line(e)} (the last '
               f'{len(item["rows"])} windows, {item["start_s"]:.1f}-{item["end_s"]:.1f} s)')
      record = {**({'camera': name} if name else {}), 'event': 'drift', 'feature': e['feature'],
                'jensen_shannon_divergence': e['jensen_shannon_divergence'],
                'threshold': e['threshold'], 'windows': len(item['rows']),
                'start_s': round(item['start_s'], 3), 'end_s': round(item['end_s'], 3),
                'wall': datetime.datetime.fromtimestamp(
                    item['wall'], datetime.timezone.utc).isoformat(timespec='milliseconds')}
      with self._lock:
        self.stdout.write(json.dumps(record) + '\n')
        self.stdout.flush()

  def summary(self, camera: str) -> Dict[str, Any]:
    """A camera's drift in its watch summary."""
    return {'checks': self.checks[camera], 'skipped': self.skipped,
            'drifted': dict(self.drifted.get(camera, {}))}

  def close(self) -> None:
    """Runs the checks still waiting, then ends the thread."""
    self._queue.put(None)
    self._thread.join()


class CameraDrift:
  """One camera's sliding window of scored windows' features, handed to `check` when full
  and then every `interval_s` of stream time."""

  def __init__(self, camera: str, check: DriftCheck, windows: int, interval_s: float,
               jpeg_quality: int):
    self.camera, self.check, self.interval_s = camera, check, interval_s
    self.jpeg_quality = jpeg_quality  # the model's: its features are of the pixels it sees
    self._rows: collections.deque = collections.deque(maxlen=max(2, windows))
    self._starts: collections.deque = collections.deque(maxlen=max(2, windows))
    self._due: Optional[float] = None  # stream time of the next check

  def add(self, frames, score: float, start_s: float, end_s: float, wall: float) -> None:
    """A scored window: frames uint8 [T, H, W, 3], its score and times."""
    self._rows.append({**drift_stats.served_features(frames, self.jpeg_quality),
                       'score': float(score)})
    self._starts.append(start_s)
    if len(self._rows) < self._rows.maxlen or (self._due is not None and end_s < self._due):
      return
    self._due = end_s + self.interval_s
    self.check.submit(self.camera, list(self._rows), self._starts[0], end_s, wall)


def check_settings(config) -> None:
  """Raises ValueError naming the drift settings of a WatchConfig out of their range."""
  problems = [f'{name} must be {rule}, got {value:g}' for name, value, ok, rule in (
      ('--drift-interval-s', config.drift_interval_s, config.drift_interval_s >= 0,
       '0 (off) or more'),
      ('--drift-windows', config.drift_windows, config.drift_windows >= 2, 'at least 2'),
      ('--drift-threshold', config.drift_threshold, 0 < config.drift_threshold <= 1,
       'within (0, 1]')) if not ok]
  if problems:
    raise ValueError('; '.join(problems))


def start(model_dir: str, config, stdout, log: Callable[[str], None]) -> Optional[DriftCheck]:
  """The drift check of a watch (`config`: a WatchConfig), or None (and a line saying why)
  when it is off or the model carries no training split statistics."""
  if config.drift_interval_s <= 0:
    return None
  try:
    reference = drift_stats.model_reference(model_dir)
  except ValueError as e:
    log(f'watch: drift: not checked: {e}')
    return None
  if reference is None:
    log(f'watch: drift: not checked: the model carries no training split statistics '
        f'({drift_stats.REFERENCE_FILE}: exported before models carried them)')
    return None
  log(f'watch: drift: every {config.drift_interval_s:g} s of stream, the last '
      f'{config.drift_windows} windows of each camera against the training split '
      f'({drift_stats.reference_clips(reference)} clips; Jensen-Shannon divergence > '
      f'{config.drift_threshold:g})')
  return DriftCheck(reference, config.drift_threshold, log, stdout)
