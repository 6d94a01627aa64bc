"""Ingestion: a folder of videos (RLVS layout) → sharded clip TFRecords per split + manifest.

Output layout, read by TFX's ImportExampleGen with `Input.Split(pattern='<split>/*')`:
  <out>/train/clips-00000-of-00001.tfrecord   (also eval/, test/)
  <out>/manifest.jsonl   one line per input file: split, or skipped with the reason
  <out>/summary.json     counts per split and class, skip reasons, timing
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from vivit_tfx.components import clip_example, video_reader
from vivit_tfx.models.features import CLASS_NAMES

SPLITS = ('train', 'eval', 'test')
MANIFEST = 'manifest.jsonl'
SUMMARY = 'summary.json'


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """How a video becomes a clip: frames kept, frame size (H, W), JPEG quality."""
  num_frames: int = 8
  frame_size: Tuple[int, int] = (64, 64)
  jpeg_quality: int = 90


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  """Fractions of each class (by video) that go to each split; the seed fixes the assignment."""
  train: float = 0.7
  eval: float = 0.15
  test: float = 0.15
  seed: int = 42

  def fractions(self) -> Dict[str, float]:
    total = self.train + self.eval + self.test
    return {'train': self.train / total, 'eval': self.eval / total, 'test': self.test / total}


@dataclasses.dataclass
class ManifestEntry:
  """The fate of one input file."""
  path: str  # relative to the input root
  status: str  # 'ok' | 'skipped'
  split: Optional[str] = None
  label: Optional[int] = None
  reason: Optional[str] = None
  video_id: Optional[str] = None
  num_frames_original: Optional[int] = None
  duration_s: Optional[float] = None
  fps: Optional[float] = None


_LABELS = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}


def label_of(class_folder: str) -> Optional[int]:
  """Label of an RLVS class folder name (case-insensitive), or None if it is not one."""
  return _LABELS.get(class_folder.lower())


@dataclasses.dataclass
class Candidate:
  """An input file that looks like a labelled video."""
  path: str  # relative to the input root
  label: int

  @property
  def video_id(self) -> str:
    return os.path.splitext(self.path)[0]


def scan(root: str) -> Tuple[List[Candidate], List[ManifestEntry], List[str]]:
  """Lists the input folder: candidate videos, skipped entries and folder-level warnings."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{root}: input folder does not exist')
  candidates, skipped, warnings = [], [], []
  seen_classes = collections.Counter()
  for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
    dirnames.sort()
    rel_dir = os.path.relpath(dirpath, root)
    for d in dirnames:
      if os.path.islink(os.path.join(dirpath, d)):
        skipped.append(ManifestEntry(os.path.normpath(os.path.join(rel_dir, d)), 'skipped',
                                     reason='symlinked folder, not followed'))
    for name in sorted(filenames):
      rel = os.path.normpath(os.path.join(rel_dir, name))
      top = rel.split(os.sep)[0] if os.sep in rel else None
      if top is None:
        reason = 'not inside a class folder (expected ' + ' or '.join(CLASS_NAMES) + ')'
      elif label_of(top) is None:
        reason = f'unknown class folder {top!r} (expected ' + ' or '.join(CLASS_NAMES) + ')'
      elif not name.lower().endswith(video_reader.VIDEO_EXTENSIONS):
        reason = f'unsupported extension {os.path.splitext(name)[1] or "(none)"!r}'
      else:
        label = label_of(top)
        seen_classes[label] += 1
        candidates.append(Candidate(rel, label))
        continue
      skipped.append(ManifestEntry(rel, 'skipped', reason=reason))
  for i, name in enumerate(CLASS_NAMES):
    if not seen_classes[i]:
      warnings.append(f'class folder {name!r} is missing or holds no video files')
  return candidates, skipped, warnings


def assign_splits(candidates: Sequence[Candidate], config: SplitConfig) -> Dict[str, str]:
  """Deterministic split per video, stratified by class: video_id → split.

  Videos of a class are ordered by a seeded hash of their id, then cut by the fractions, so
  the assignment does not depend on listing order and every split gets its share of a class.
  """
  by_class = collections.defaultdict(list)
  for c in candidates:
    by_class[c.label].append(c.video_id)
  fractions = config.fractions()
  out = {}
  for ids in by_class.values():
    ids = sorted(set(ids), key=lambda v: hashlib.sha1(f'{config.seed}:{v}'.encode()).hexdigest())
    n = len(ids)
    n_eval = int(round(n * fractions['eval']))
    n_test = int(round(n * fractions['test']))
    if n >= 3:  # every split gets at least one video of the class
      n_eval, n_test = max(n_eval, 1 if fractions['eval'] else 0), max(
          n_test, 1 if fractions['test'] else 0)
    n_train = n - n_eval - n_test
    for i, vid in enumerate(ids):
      out[vid] = 'train' if i < n_train else ('eval' if i < n_train + n_eval else 'test')
  return out


@dataclasses.dataclass(frozen=True)
class _Job:
  root: str
  candidate: Candidate
  clip: ClipConfig


def read_jpegs(path: str, clip: ClipConfig):
  """One video → ((JPEG frames, VideoInfo), None) or (None, one-line reason). Never raises.

  Needs only OpenCV (no TensorFlow), so ingestion workers start fast and stay small.
  """
  try:
    sampled = video_reader.read_clip(path, clip.num_frames, tuple(clip.frame_size))
    return (clip_example.encode_clip(sampled, clip.jpeg_quality), sampled.info), None
  except video_reader.VideoReadError as e:
    return None, str(e)
  except Exception as e:  # pylint: disable=broad-except
    return None, f'{type(e).__name__}: {e}'.splitlines()[0][:200]


def read_example(path: str, rel_path: str, label: int, clip: ClipConfig):
  """One video → (tf.train.Example, None) or (None, one-line reason). Never raises."""
  result, reason = read_jpegs(path, clip)
  if result is None:
    return None, reason
  jpegs, info = result
  return clip_example.to_example(jpegs, info, label, os.path.splitext(rel_path)[0],
                                 rel_path), None


def _process(job: _Job):
  c = job.candidate
  return c, *read_jpegs(os.path.join(job.root, c.path), job.clip)


class _ShardedWriter:
  """Writes one split's records round-robin into a fixed number of TFRecord shards."""

  def __init__(self, directory: str, num_shards: int):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    os.makedirs(directory, exist_ok=True)
    self._writers = [
        tf.io.TFRecordWriter(
            os.path.join(directory, f'clips-{i:05d}-of-{num_shards:05d}.tfrecord'))
        for i in range(num_shards)
    ]
    self._count = 0

  def write(self, record: bytes) -> None:
    self._writers[self._count % len(self._writers)].write(record)
    self._count += 1

  def close(self) -> None:
    for w in self._writers:
      w.close()


@dataclasses.dataclass
class IngestSummary:
  """What an ingestion run did; also written to summary.json."""
  input_root: str
  output_dir: str
  clips: Dict[str, Dict[str, int]]  # split → class name → count
  skipped: List[Dict[str, str]]
  warnings: List[str]
  seconds: float
  total_inputs: int

  @property
  def num_written(self) -> int:
    return sum(sum(v.values()) for v in self.clips.values())

  def to_text(self) -> str:
    lines = [f'ingest: {self.input_root} → {self.output_dir}',
             f'  inputs: {self.total_inputs}, clips written: {self.num_written}, '
             f'skipped: {len(self.skipped)}, {self.seconds:.1f} s '
             f'({self.num_written / max(self.seconds, 1e-9):.1f} clips/s)']
    for split in SPLITS:
      counts = self.clips.get(split, {})
      lines.append(f'  {split:5s}: ' + ', '.join(f'{c}={counts.get(c, 0)}' for c in CLASS_NAMES))
    for s in self.skipped:
      lines.append(f'  skipped {s["path"]}: {s["reason"]}')
    for w in self.warnings:
      lines.append(f'  warning: {w}')
    return '\n'.join(lines)


def ingest(root: str, output_dir: str, clip: ClipConfig = ClipConfig(),
           splits: SplitConfig = SplitConfig(), clips_per_shard: int = 256, workers: int = 0,
           progress: bool = True) -> IngestSummary:
  """Ingests every video under `root`; bad inputs are skipped and listed, never fatal."""
  start = time.time()
  candidates, skipped, warnings = scan(root)
  split_of = assign_splits(candidates, splits)
  planned = collections.Counter(split_of[c.video_id] for c in candidates)
  for split in SPLITS:
    shutil.rmtree(os.path.join(output_dir, split), ignore_errors=True)
  os.makedirs(output_dir, exist_ok=True)
  writers = {
      s: _ShardedWriter(os.path.join(output_dir, s), max(1, math.ceil(planned[s] /
                                                                        clips_per_shard)))
      for s in SPLITS if planned[s]
  }
  entries = list(skipped)
  counts = {s: collections.Counter() for s in SPLITS}
  jobs = [_Job(root, c, clip) for c in candidates]
  try:
    for c, result, reason in tqdm(_run(jobs, workers), total=len(jobs), desc='ingest',
                                  unit='clip', disable=not progress):
      split = split_of[c.video_id]
      if result is None:
        entries.append(ManifestEntry(c.path, 'skipped', label=c.label, reason=reason))
        continue
      jpegs, info = result
      writers[split].write(clip_example.to_example(jpegs, info, c.label, c.video_id,
                                                   c.path).SerializeToString())
      counts[split][CLASS_NAMES[c.label]] += 1
      entries.append(ManifestEntry(c.path, 'ok', split=split, label=c.label,
                                   video_id=c.video_id, num_frames_original=info.num_frames,
                                   duration_s=round(info.duration_s, 3), fps=info.fps))
  finally:
    for w in writers.values():
      w.close()
  entries.sort(key=lambda e: e.path)
  with open(os.path.join(output_dir, MANIFEST), 'w') as f:
    for e in entries:
      f.write(json.dumps({k: v for k, v in dataclasses.asdict(e).items() if v is not None},
                         ensure_ascii=False) + '\n')
  summary = IngestSummary(
      input_root=root, output_dir=output_dir,
      clips={s: dict(counts[s]) for s in SPLITS},
      skipped=[{'path': e.path, 'reason': e.reason} for e in entries if e.status == 'skipped'],
      warnings=warnings, seconds=time.time() - start, total_inputs=len(entries))
  with open(os.path.join(output_dir, SUMMARY), 'w') as f:
    json.dump(dataclasses.asdict(summary), f, indent=1, ensure_ascii=False)
  return summary


def _run(jobs: List[_Job], workers: int) -> Iterator:
  """Runs `_process` over the jobs in order, on every core unless `workers` is 1."""
  workers = workers or os.cpu_count() or 1
  if workers == 1 or len(jobs) <= 1:
    yield from map(_process, jobs)
    return
  with multiprocessing.get_context('spawn').Pool(min(workers, len(jobs))) as pool:
    yield from pool.imap(_process, jobs, chunksize=2)


def read_manifest(output_dir: str) -> List[dict]:
  with open(os.path.join(output_dir, MANIFEST)) as f:
    return [json.loads(line) for line in f]
