"""What a scan has done, kept so that a rerun skips it and a killed scan resumes.

Each video's outputs are written whole or not at all (a temporary name in the same folder,
then a rename), and its record `.scan/<key>.json` last: a video with a record is finished. The
key is a hash of the model's fingerprint (its graph, variables index and clip config), the
video's path, size and modification time, and the settings that change the result, so a rerun
with the same model skips the video and a new model version, an edited video or another
stride scores it again. Files go through Beam's FileSystems: local paths and gs:// alike.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import uuid
from typing import Dict, Iterable, List, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from vivit_tfx.data import clip_config, video_reader

STATE = '.scan'  # the records' folder inside --out
VIDEOS = 'videos'  # each video's segments JSON and timeline PNG
TEMP_PREFIX = '.tmp-'


@dataclasses.dataclass(frozen=True)
class Video:
  """One input video as listed: where it is, what it is now, and the names of its outputs."""
  path: str
  size: int
  mtime: float
  key: str = ''  # `video_key`
  stem: str = ''  # its outputs' file stem (`timeline.output_stems`)


def join(folder: str, *names: str) -> str:
  return (posixpath.join if '://' in folder else os.path.join)(folder, *names)


def list_videos(spec: str) -> Dict[str, List]:
  """{'videos': [Video], 'ignored': [paths without a video extension]} for a folder (every
  file below it), a glob or a gs:// prefix; a missing input raises ValueError."""
  if any(c in spec for c in '*?[') or spec.lower().endswith(video_reader.VIDEO_EXTENSIONS):
    pattern = spec  # a glob, or one video
  else:
    pattern = join(spec.rstrip('/'), '**')  # a folder or a gs:// prefix: everything below
  found = FileSystems.match([pattern])[0].metadata_list
  if not found:
    raise ValueError(f'{spec}: no files found')
  videos, ignored = [], []
  for meta in sorted(found, key=lambda m: m.path):
    if meta.path.lower().endswith(video_reader.VIDEO_EXTENSIONS):
      videos.append(Video(meta.path, meta.size_in_bytes, meta.last_updated_in_seconds))
    elif not posixpath.basename(meta.path).startswith('.'):
      ignored.append(meta.path)
  return {'videos': videos, 'ignored': ignored}


def model_fingerprint(model_dir: str) -> str:
  """sha256 of the model's graph, variables index and clip config, or of a `.tflite` model
  and its clip config (what makes its scores)."""
  digest = hashlib.sha256()
  paths = ([model_dir, clip_config.clip_config_path(model_dir)]
           if model_dir.endswith(clip_config.TFLITE_SUFFIX) else
           [join(model_dir, *parts) for parts in (('saved_model.pb',),
                                                  ('variables', 'variables.index'),
                                                  ('assets.extra', 'clip_config.json'))])
  for path in paths:
    if FileSystems.exists(path):
      with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        digest.update(f.read())
  return digest.hexdigest()


def video_key(video: Video, model: str, settings: Iterable) -> str:
  """The record's name: the same video (path, size, mtime), model and settings, the same key."""
  where = video.path if '://' in video.path else os.path.abspath(video.path)
  text = json.dumps([model, where, video.size, video.mtime, list(settings)])
  return hashlib.sha256(text.encode()).hexdigest()[:20]


def write_atomically(path: str, data: bytes) -> None:
  """`data` at `path`, whole or not at all: a temporary name beside it, then a rename."""
  folder, name = posixpath.split(path) if '://' in path else os.path.split(path)
  scratch = join(folder, f'{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}')
  with FileSystems.create(scratch, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.write(data)
  if '://' not in path:
    os.replace(scratch, path)  # atomic, over a stale copy of our own
  else:
    if FileSystems.exists(path):
      FileSystems.delete([path])
    FileSystems.rename([scratch], [path])


def read_json(path: str) -> Optional[dict]:
  try:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      return json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError, IOError):
    return None


class Ledger:
  """The records of one --out folder: `done` keys are skipped by a rerun."""

  def __init__(self, out: str):
    self.folder = join(out, STATE)

  def record_path(self, key: str) -> str:
    return join(self.folder, f'{key}.json')

  def write(self, record: dict) -> None:
    write_atomically(self.record_path(record['key']), json.dumps(record).encode('utf-8'))

  def read(self, key: str) -> Optional[dict]:
    if not FileSystems.exists(self.record_path(key)):
      return None
    return read_json(self.record_path(key))

  def done(self, key: str) -> bool:
    record = self.read(key)
    return bool(record) and record.get('status') == 'scored'


def remove_scratch(folder: str) -> List[str]:
  """Deletes the temporary files a killed scan left in one of its own folders."""
  if not FileSystems.exists(folder):
    return []
  stale = [m.path for m in FileSystems.match([join(folder, TEMP_PREFIX + '*')])[0].metadata_list]
  if stale:
    FileSystems.delete(stale)
  return stale
