"""Ingestion: a folder of labelled videos (any layout) → sharded clip TFRecords per split.

Output layout, read by TFX's ImportExampleGen with `Input.Split(pattern='<split>/*')`:
  <out>/train/clips-00000-of-00001.tfrecord   (also eval/, test/)
  <out>/manifest.jsonl   one line per input file: split, label and class, or the skip reason
  <out>/summary.json     classes (label order), layout, counts per split and class, skips

Every video is decoded first; splits are assigned afterwards over the videos that decoded
(group-safe and stratified, `layouts.assign_splits`), so a bad file never takes a split slot.
Videos are read in a seeded shuffled order, so every shard mixes the classes.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import multiprocessing
import os
import random
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from vivit_tfx.data import clip_example, layouts, remote_files, video_reader
from vivit_tfx.data.clip_config import ClipConfig

SPLITS = layouts.SPLITS
MANIFEST = 'manifest.jsonl'
SUMMARY = 'summary.json'
# Decoded records wait here (inside the output folder) until the splits are known.
_DECODED = '.decoded.tfrecord'


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


# Pre-training footage (layout 'unlabeled'): every video to the train split.
TRAIN_ONLY = SplitConfig(train=1.0, eval=0.0, test=0.0)


@dataclasses.dataclass
class ManifestEntry:
  """The fate of one input file."""
  path: str  # relative to the input root
  status: str  # 'ok' | 'skipped'
  split: Optional[str] = None
  label: Optional[int] = None
  class_name: Optional[str] = None  # written as "class"
  reason: Optional[str] = None
  video_id: Optional[str] = None
  group: Optional[str] = None  # videos of one group share a split
  num_frames_original: Optional[int] = None
  duration_s: Optional[float] = None
  fps: Optional[float] = None


Candidate = layouts.Candidate
DatasetConfig = layouts.DatasetConfig


def assign_splits(candidates: Sequence[Candidate], config: SplitConfig) -> Dict[str, str]:
  """Group-safe split per video, stratified by class (see `layouts.assign_splits`)."""
  return layouts.assign_splits(candidates, config.fractions(), config.seed)


def shuffled(items: Sequence, seed: int) -> List:
  """A seeded shuffle of `items` (the order records are read and written in)."""
  order = list(items)
  random.Random(seed).shuffle(order)
  return order


@dataclasses.dataclass(frozen=True)
class _Job:
  root: str
  candidate: Candidate
  clip: ClipConfig


def read_jpegs(path: str, clip: ClipConfig):
  """One video → ((JPEG frames, VideoInfo), None) or (None, one-line reason). Never raises.

  Needs only PyAV and OpenCV (no TensorFlow), so ingestion workers start fast and stay small.
  """
  try:
    sampled = video_reader.read_clip(path, clip.num_frames, tuple(clip.frame_size),
                                     clip.sample_fps, clip.stored_frames)
    jpegs = clip_example.encode_clip(sampled, clip.jpeg_quality)
    return (jpegs + [b''] * (clip.stored_frames - len(jpegs)), sampled.info), None
  except video_reader.VideoReadError as e:
    return None, str(e)
  except Exception as e:  # pylint: disable=broad-except
    return None, f'{type(e).__name__}: {e}'.splitlines()[0][:200]


def read_example(path: str, rel_path: str, label: int, clip: ClipConfig, source: str = ''):
  """One video → (tf.train.Example, None) or (None, one-line reason). Never raises.
  source: its evaluation slice (`layouts.source_of`)."""
  result, reason = read_jpegs(path, clip)
  if result is None:
    return None, reason
  jpegs, info = result
  return clip_example.to_example(jpegs, info, label, os.path.splitext(rel_path)[0],
                                 rel_path, source), None


def _process(job: _Job):
  c = job.candidate
  return c, *read_jpegs(os.path.join(job.root, c.path), job.clip)


class _ShardedWriter:
  """Writes one split's records round-robin into a fixed number of TFRecord shards."""

  def __init__(self, directory: str, num_shards: int):
    # local: the CLI imports data/ to build its options; it must not wait for TensorFlow.
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
  """What an ingestion run did; written to <clips>/summary.json by `write`, read back only by
  `read` (no other module parses the file: tests/test_clip_contract.py)."""
  input_root: str = ''
  output_dir: str = ''
  classes: List[str] = dataclasses.field(default_factory=list)  # label order
  layout: str = ''
  clips: Dict[str, Dict[str, int]] = dataclasses.field(
      default_factory=dict)  # split → class name → count
  skipped: List[Dict[str, str]] = dataclasses.field(default_factory=list)
  warnings: List[str] = dataclasses.field(default_factory=list)
  seconds: float = 0.0
  total_inputs: int = 0
  bytes_per_video: int = 0  # mean serialised record size (the sampling rule's cost)

  @classmethod
  def read(cls, location: str) -> 'IngestSummary':
    """The summary of ingested clips: their folder, or its summary.json (any tf.io.gfile URI);
    keys of other versions are ignored, missing ones take their defaults. FileNotFoundError
    without one."""
    path = location if os.path.basename(location) == SUMMARY else os.path.join(location,
                                                                                 SUMMARY)
    if not remote_files.exists(path):
      raise FileNotFoundError(f'{path}: no ingest summary (not a folder `vivit-tfx ingest` '
                              'wrote)')
    data = remote_files.read_json(path)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})

  def write(self, folder: str) -> str:
    """Writes <folder>/summary.json; returns its path."""
    path = os.path.join(folder, SUMMARY)
    remote_files.write_text(path, json.dumps(dataclasses.asdict(self), indent=1,
                                             ensure_ascii=False))
    return path

  def videos(self, split: str) -> int:
    """Clips written to `split`, all classes."""
    return sum(self.clips.get(split, {}).values())

  @property
  def num_written(self) -> int:
    return sum(sum(v.values()) for v in self.clips.values())

  def to_text(self) -> str:
    lines = [f'ingest: {self.input_root} → {self.output_dir} (layout {self.layout}, classes '
             f'{", ".join(self.classes)})',
             f'  inputs: {self.total_inputs}, clips written: {self.num_written}, '
             f'skipped: {len(self.skipped)}, {self.seconds:.1f} s '
             f'({self.num_written / max(self.seconds, 1e-9):.1f} clips/s), '
             f'{self.bytes_per_video:,} bytes per video']
    for split in SPLITS:
      counts = self.clips.get(split, {})
      lines.append(f'  {split:5s}: ' + ', '.join(f'{c}={counts.get(c, 0)}'
                                                 for c in self.classes))
    for s in self.skipped:
      lines.append(f'  skipped {s["path"]}: {s["reason"]}')
    for w in self.warnings:
      lines.append(f'  warning: {w}')
    return '\n'.join(lines)


def ingest(root: str, output_dir: str, clip: ClipConfig = ClipConfig(),
           splits: SplitConfig = SplitConfig(), dataset: DatasetConfig = DatasetConfig(),
           clips_per_shard: int = 256, workers: int = 0,
           progress: bool = True) -> IngestSummary:
  """Ingests every video of `root` (a folder, or a CSV for the csv layout) into `output_dir`.

  Bad inputs are skipped and listed, never fatal. Writes only new files into `output_dir`
  (the caller gives a fresh folder) and deletes nothing of the user's.
  """
  # local: the CLI imports data/ to build its options; it must not wait for TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  start = time.time()
  found = layouts.scan(root, dataset)
  entries = [ManifestEntry(path, 'skipped', reason=reason) for path, reason in found.skipped]
  os.makedirs(output_dir, exist_ok=True)
  decoded_path = os.path.join(output_dir, _DECODED)
  jobs = [_Job(found.root, c, clip) for c in shuffled(found.candidates, splits.seed)]
  usable: List[Tuple[Candidate, video_reader.VideoInfo]] = []
  with tf.io.TFRecordWriter(decoded_path) as decoded:  # in the shuffled order
    for c, result, reason in tqdm(_run(jobs, workers), total=len(jobs), desc='ingest',
                                  unit='clip', disable=not progress):
      if result is None:
        entries.append(ManifestEntry(c.path, 'skipped', label=c.label,
                                     class_name=found.classes[c.label], reason=reason))
        continue
      jpegs, info = result
      decoded.write(clip_example.to_example(jpegs, info, c.label, c.video_id,
                                            c.path, c.source).SerializeToString())
      usable.append((c, info))
  split_of = assign_splits([c for c, _ in usable], splits)
  counts = {s: collections.Counter() for s in SPLITS}
  for c, info in usable:
    split = split_of[c.video_id]
    counts[split][found.classes[c.label]] += 1
    entries.append(ManifestEntry(c.path, 'ok', split=split, label=c.label,
                                 class_name=found.classes[c.label], video_id=c.video_id,
                                 group=c.group or None, num_frames_original=info.num_frames,
                                 duration_s=round(info.duration_s, 3), fps=info.fps))
  record_bytes = _write_splits(decoded_path, [split_of[c.video_id] for c, _ in usable],
                               output_dir, clips_per_shard)
  os.remove(decoded_path)  # ingest's own scratch file
  entries.sort(key=lambda e: e.path)
  with open(os.path.join(output_dir, MANIFEST), 'w') as f:
    for e in entries:
      f.write(json.dumps(_manifest_line(e), ensure_ascii=False) + '\n')
  summary = IngestSummary(
      input_root=root, output_dir=output_dir, classes=list(found.classes),
      layout=found.layout, clips={s: dict(counts[s]) for s in SPLITS},
      skipped=[{'path': e.path, 'reason': e.reason} for e in entries if e.status == 'skipped'],
      warnings=found.warnings, seconds=time.time() - start, total_inputs=len(entries),
      bytes_per_video=round(record_bytes / max(1, len(usable))))
  summary.write(output_dir)
  return summary


def _manifest_line(e: ManifestEntry) -> dict:
  line = {k: v for k, v in dataclasses.asdict(e).items() if v is not None}
  if 'class_name' in line:
    line['class'] = line.pop('class_name')
  return line


def _write_splits(decoded_path: str, split_per_record: List[str], output_dir: str,
                  clips_per_shard: int) -> int:
  """Copies the decoded records, in their (shuffled) order, into each split's shards;
  returns the bytes of the records written."""
  # local: the CLI imports data/ to build its options; it must not wait for TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  planned = collections.Counter(split_per_record)
  writers = {s: _ShardedWriter(os.path.join(output_dir, s),
                               max(1, math.ceil(planned[s] / clips_per_shard)))
             for s in SPLITS if planned[s]}
  total = 0
  try:
    for split, record in zip(split_per_record, tf.data.TFRecordDataset(decoded_path)):
      data = record.numpy()
      writers[split].write(data)
      total += len(data)
  finally:
    for w in writers.values():
      w.close()
  return total


def _run(jobs: List[_Job], workers: int) -> Iterator:
  """Runs `_process` over the jobs in order, on every core unless `workers` is 1."""
  workers = workers or os.cpu_count() or 1
  if workers == 1 or len(jobs) <= 1:
    yield from map(_process, jobs)
    return
  # One decoder thread per worker process: the processes already use every core.
  with multiprocessing.get_context('spawn').Pool(
      min(workers, len(jobs)), initializer=video_reader.set_decoder_threads,
      initargs=(1,)) as pool:
    yield from pool.imap(_process, jobs, chunksize=2)


def read_manifest(output_dir: str) -> List[dict]:
  with open(os.path.join(output_dir, MANIFEST)) as f:
    return [json.loads(line) for line in f]
