"""Reviewers' verdicts on the review page: kept append-only in one JSON-lines file.

One line per verdict, written with one `write` on an O_APPEND descriptor, then fsynced before
the page hears it was kept: a killed server loses at most the line it was writing, never an
earlier one. On load a line that is not a whole JSON record (the torn last line of a killed
process) is skipped with a one-line warning; the next append starts on a new line. A later
verdict on the same segment supersedes the earlier one (both stay in the file).

A record:
  {"time": "2026-12-06T04:01:02.345+00:00", "reviewer": "alice", "job": "<review id>",
   "video": "<display name>", "source": "<absolute path of the reviewed video>",
   "model": "<SavedModel path>", "classes": [...], "positive_class": "Violence",
   "kind": "segment", "segment": 1, "start_s": 2.0, "end_s": 5.0, "verdict": "not violent"}
  kind "missed" (a stretch the model did not flag): "segment": null, "verdict": "missed",
  "class": "<class name>".
"""
from __future__ import annotations

import datetime
import json
import math
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

FILE = 'verdicts.jsonl'
SEGMENT_VERDICTS = ('violent', 'not violent', 'unsure')
MISSED = 'missed'


def read(path: str) -> Tuple[List[Dict[str, Any]], List[str]]:
  """(the records of a verdict file, one warning per line skipped); no file: ([], [])."""
  records, warnings = [], []
  if not os.path.exists(path):
    return records, warnings
  with open(path, 'rb') as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except (ValueError, UnicodeDecodeError):
        record = None
      if isinstance(record, dict) and record.get('kind') in ('segment', MISSED):
        records.append(record)
      else:
        warnings.append(f'{path} line {n}: not a whole verdict record (a write cut short?): '
                        'skipped')
  return records, warnings


class VerdictLog:
  """The verdict file of one server: loaded once, then appended to (thread-safe)."""

  def __init__(self, path: str):
    self.path = path
    self.records, warnings = read(path)
    for w in warnings:
      print(f'serve: warning: {w}', file=sys.stderr, flush=True)
    self._lock = threading.Lock()

  def append(self, record: Dict[str, Any]) -> Dict[str, Any]:
    """Writes `record` as one line, flushed and fsynced; returns it."""
    data = (json.dumps(record, ensure_ascii=False) + '\n').encode('utf-8')
    with self._lock:
      created = not os.path.exists(self.path)
      fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
      try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b'\n':
          data = b'\n' + data  # end a torn last line: this record stays whole
        os.write(fd, data)
        os.fsync(fd)
      finally:
        os.close(fd)
      if created:  # the new file's name is durable too
        dir_fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
          os.fsync(dir_fd)
        finally:
          os.close(dir_fd)
      self.records.append(record)
    return record

  def of_job(self, job_id: str) -> Dict[str, Any]:
    """{'segments': {segment number: latest record}, 'missed': [records]} of one review."""
    segments: Dict[int, Dict[str, Any]] = {}
    missed = []
    for r in self.records:
      if r.get('job') != job_id:
        continue
      if r['kind'] == 'segment':
        segments[r.get('segment')] = r
      else:
        missed.append(r)
    return {'segments': segments, 'missed': missed}


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')


def _seconds(value, what: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ValueError(f'{what} must be a number of seconds')
  return round(float(value), 3)


def make(result: Dict[str, Any], body: Any, reviewer: str) -> Dict[str, Any]:
  """The record of a verdict request on the review `result`; ValueError says what is wrong.

  `body`: {"segment": <number, 1-based>, "verdict": "violent" | "not violent" | "unsure"} or
  {"missed": {"start_s": s, "end_s": s, "class": "<class>"}}.
  """
  if not isinstance(body, dict):
    raise ValueError('expected a JSON object')
  record = {'time': now(), 'reviewer': reviewer, 'job': result['job'], 'video': result['video'],
            'source': result.get('source_path', ''), 'model': result.get('model', ''),
            'classes': list(result.get('classes', [])),
            'positive_class': result.get('positive_class') or ''}
  if 'missed' in body:
    missed = body['missed'] if isinstance(body['missed'], dict) else {}
    start = _seconds(missed.get('start_s'), 'start_s')
    end = _seconds(missed.get('end_s'), 'end_s')
    if not 0 <= start < end <= result['duration_s'] + 0.5:
      raise ValueError(f'a missed stretch needs 0 ≤ start < end ≤ the video\'s '
                       f'{result["duration_s"]:.1f} s')
    name = missed.get('class')
    if name not in (record['classes'] or [record['positive_class']]):
      raise ValueError(f'class {name!r} is not one of the model\'s classes')
    return dict(record, kind=MISSED, segment=None, start_s=start, end_s=end, verdict=MISSED,
                **{'class': name})
  number, verdict = body.get('segment'), body.get('verdict')
  if (isinstance(number, bool) or not isinstance(number, int)
      or not 1 <= number <= len(result['segments'])):
    raise ValueError(f'segment must be a number from 1 to {len(result["segments"])}')
  if verdict not in SEGMENT_VERDICTS:
    raise ValueError(f'verdict must be one of {", ".join(SEGMENT_VERDICTS)}')
  segment = result['segments'][number - 1]
  return dict(record, kind='segment', segment=number, start_s=segment['start_s'],
              end_s=segment['end_s'], verdict=verdict)


def latest(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Each review's segments with their latest verdict, plus every missed stretch, in order."""
  keep: Dict[Tuple[str, Optional[int]], Dict[str, Any]] = {}
  for n, r in enumerate(records):
    key = (r.get('job', ''), r.get('segment')) if r['kind'] == 'segment' else ('', n)
    keep.pop(key, None)
    keep[key] = r
  return list(keep.values())
