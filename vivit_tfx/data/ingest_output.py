"""Where ingestion writes: checked, staged and swapped into place so no user data is lost.

Ingest never writes into its own input, never replaces a folder it did not make, and writes
into a staging folder beside the target that is renamed into place only when complete, so an
interrupted ingest leaves the previous output intact. Its outputs carry a marker with the input,
the settings they were made from (which `vivit-tfx run` checks before using them) and the files
ingest wrote: an earlier output is replaced only while it holds nothing else.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

from vivit_tfx.data import ingest, layouts

MARKER = '.vivit-tfx-ingest.json'     # in a finished output: its provenance
STAGING_MARKER = '.vivit-tfx-staging'  # in a staging folder: the pid that owns it
_STAGING_INFIX = '.ingest-staging-'


class OutputError(ValueError):
  """The output folder cannot be written without risking data the tool does not own."""


class NothingUsable(ValueError):
  """No input decoded: the previous output (if any) is kept; `summary` says why."""

  def __init__(self, summary):
    super().__init__(f'no usable video under {summary.input_root}: nothing was written '
                     f'({len(summary.skipped)} inputs skipped)')
    self.summary = summary


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What an ingest output was made from: the input folder and every output-shaping setting."""
  input_root: str  # real path of the input folder
  settings: Dict[str, Any]

  @classmethod
  def of(cls, input_root: str, **settings) -> 'Provenance':
    """Settings may be dataclasses (ClipConfig, SplitConfig, …) or plain JSON values."""
    plain = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
             for k, v in sorted(settings.items())}
    return cls(os.path.realpath(input_root), json.loads(json.dumps(plain, default=list)))

  @property
  def fingerprint(self) -> str:
    text = json.dumps({'input': self.input_root, 'settings': self.settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

  def to_json(self, files: List[str]) -> Dict[str, Any]:
    return {'tool': 'vivit-tfx ingest', 'input_root': self.input_root,
            'settings': self.settings, 'fingerprint': self.fingerprint, 'files': files}


def read_provenance(output_dir: str) -> Optional[Provenance]:
  """The marker of an ingest output, or None if the folder was not made by ingest."""
  try:
    with open(os.path.join(output_dir, MARKER)) as f:
      data = json.load(f)
    return Provenance(data['input_root'], data['settings'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


# What an ingest output held before its marker listed its files: the manifest, the summary and
# the split shards <split>/clips-*.tfrecord.
_LEGACY_FILES = re.compile(
    r'(manifest\.jsonl|summary\.json|(train|eval|test)/clips-[^/]+\.tfrecord)$')


def _listed_files(output_dir: str) -> Optional[List[str]]:
  """The files an ingest output's marker lists (None for a marker older than the list)."""
  try:
    with open(os.path.join(output_dir, MARKER)) as f:
      files = json.load(f).get('files')
  except (OSError, ValueError, AttributeError):
    return None
  return files if isinstance(files, list) else None


def foreign_entries(output_dir: str) -> List[str]:
  """What an ingest output holds that ingest did not write (relative paths, sorted; folders end
  in '/'): everything but its marker, the files the marker lists and the folders holding them."""
  listed = _listed_files(output_dir)
  owned = (lambda rel: rel in listed) if listed is not None else _LEGACY_FILES.match
  ours = {p for p in written_files(output_dir) if p == MARKER or owned(p)}
  folders = {os.path.dirname(p) for p in ours} - {''}
  foreign = []
  for dirpath, dirnames, filenames in os.walk(output_dir):
    rel_dir = os.path.relpath(dirpath, output_dir)
    for name in dirnames + filenames:
      rel = os.path.normpath(os.path.join(rel_dir, name))
      if rel not in (folders if name in dirnames else ours):
        foreign.append(rel + ('/' if name in dirnames else ''))
    dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel_dir, d)) in folders]
  return sorted(foreign)


def written_files(folder: str) -> List[str]:
  """Every file under `folder` (relative paths, sorted): what an ingest wrote into staging."""
  return sorted(os.path.relpath(os.path.join(d, n), folder)
                for d, _, names in os.walk(folder) for n in names)


def differences(made: Provenance, wanted: Provenance) -> List[str]:
  """Human-readable differences between two provenances ('num_frames: 8 → 16')."""
  out = []
  if made.input_root != wanted.input_root:
    out.append(f'input: {made.input_root} → {wanted.input_root}')

  def walk(prefix, a, b):
    if isinstance(a, dict) and isinstance(b, dict):
      for k in sorted(set(a) | set(b)):
        walk(k, a.get(k), b.get(k))
    elif a != b:
      out.append(f'{prefix}: {a!r} → {b!r}')

  walk('', made.settings, wanted.settings)
  return out


def _inside(path: str, parent: str) -> bool:
  return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def overlap(a: str, b: str) -> bool:
  """Are two folders the same, or one inside the other (after resolving links)?"""
  a, b = os.path.realpath(a), os.path.realpath(b)
  return _inside(a, b) or _inside(b, a)


def check_target(input_root: str, output_dir: str, wanted: Provenance,
                 overwrite: bool = False, flags: Tuple[str, str] = ('--output', '--overwrite')
                 ) -> None:
  """Raises OutputError (one line) unless writing `output_dir` risks nothing the tool did not
  make: not the input nor inside it, not above it, and either absent, empty, or an ingest
  output made from the same input and settings (any ingest output with `overwrite`) that holds
  only the files ingest wrote (its marker lists them). flags: the command's options naming
  the output and allowing the replacement (`run`: --clips-dir, --overwrite true)."""
  out, replace = flags
  src, dst = os.path.realpath(input_root), os.path.realpath(output_dir)
  if _inside(dst, src):
    raise OutputError(f'{output_dir}: the output is the input folder or inside it; '
                      f'choose an {out} outside ' + input_root)
  if _inside(src, dst):
    raise OutputError(f'{output_dir}: the output folder contains the input folder '
                      f'{input_root}; choose another {out}')
  if os.path.exists(dst) and not os.path.isdir(dst):
    raise OutputError(f'{output_dir}: exists and is not a folder; choose another {out}')
  if not os.path.isdir(dst) or not _user_entries(dst):
    return
  made = read_provenance(dst)
  if made is None:
    raise OutputError(f'{output_dir}: not empty and not made by `vivit-tfx ingest` (no '
                      f'{MARKER}); it is left untouched: choose a new or empty {out}')
  foreign = foreign_entries(dst)
  if foreign:
    raise OutputError(f'{output_dir}: holds {os.path.join(output_dir, foreign[0])}'
                      + (f' (and {len(foreign) - 1} more)' if len(foreign) > 1 else '')
                      + f', which ingest did not write (not listed in {MARKER}); nothing was '
                      f'changed: move it out of the folder, or choose another {out}')
  if made.fingerprint != wanted.fingerprint and not overwrite:
    raise OutputError(f'{output_dir}: holds clips made from other input or settings ('
                      + '; '.join(differences(made, wanted)[:4])
                      + f'); pass {replace} to replace them, or choose another {out}')


def _user_entries(path: str) -> List[str]:
  return [n for n in os.listdir(path) if n != STAGING_MARKER]


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_orphaned_staging(output_dir: str) -> List[str]:
  """Removes staging folders of `output_dir` left by an ingest whose process is gone."""
  parent, base = os.path.split(os.path.abspath(output_dir))
  removed = []
  if not os.path.isdir(parent):
    return removed
  for name in os.listdir(parent):
    if not name.startswith(base + _STAGING_INFIX):
      continue
    path = os.path.join(parent, name)
    try:
      with open(os.path.join(path, STAGING_MARKER)) as f:
        owner = json.load(f)
    except (OSError, ValueError):
      continue  # not ours (no marker): never touched
    if owner.get('host') == socket.gethostname() and not _pid_alive(int(owner.get('pid', 0))):
      shutil.rmtree(path)
      removed.append(path)
  return removed


@contextlib.contextmanager
def staged(output_dir: str, provenance: Provenance) -> Iterator[str]:
  """Yields a fresh staging folder beside `output_dir`; on success it replaces `output_dir`
  (call `check_target` first), on failure it is removed and `output_dir` is untouched."""
  target = os.path.abspath(output_dir)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  remove_orphaned_staging(target)
  staging = f'{target}{_STAGING_INFIX}{uuid.uuid4().hex[:8]}'
  os.makedirs(staging)
  with open(os.path.join(staging, STAGING_MARKER), 'w') as f:
    json.dump({'pid': os.getpid(), 'host': socket.gethostname()}, f)
  try:
    yield staging
    # The staging marker stays until the swap: a staging folder killed before it is still
    # recognised (and removed) as ours by the next ingest.
    files = [f for f in written_files(staging) if f != STAGING_MARKER]
    with open(os.path.join(staging, MARKER), 'w') as f:
      json.dump(provenance.to_json(files), f, indent=1, ensure_ascii=False)
    previous = None
    if os.path.isdir(target):  # an ingest output (check_target) or an empty folder
      previous = f'{target}{_STAGING_INFIX}old-{uuid.uuid4().hex[:8]}'
      os.rename(target, previous)
      late = foreign_entries(previous) if read_provenance(previous) else _user_entries(previous)
      if late:  # written by someone while ingest ran: put everything back, replace nothing
        os.rename(previous, target)
        raise OutputError(f'{output_dir}: {os.path.join(output_dir, late[0])} appeared while '
                          'ingest ran; nothing was changed: move it out and ingest again')
    os.remove(os.path.join(staging, STAGING_MARKER))
    os.rename(staging, target)
    if previous:
      shutil.rmtree(previous)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


_NOT_SETTINGS = ('workers', 'progress')  # change how fast, not what is written


def provenance_for(input_root: str, **ingest_kwargs) -> Provenance:
  """The provenance `ingest_into` records for these `ingest.ingest` keyword arguments."""
  defaults = {'clip': ingest.ClipConfig(), 'splits': ingest.SplitConfig(),
              'dataset': layouts.DatasetConfig(), 'clips_per_shard': 256}
  settings = {**defaults, **{k: v for k, v in ingest_kwargs.items() if k not in _NOT_SETTINGS}}
  return Provenance.of(input_root, **settings)


def ingest_into(input_root: str, output_dir: str, overwrite: bool = False,
                flags: Tuple[str, str] = ('--output', '--overwrite'), **ingest_kwargs):
  """`ingest.ingest` made safe: checks the target, writes a staging folder, swaps it in.

  Returns the IngestSummary. Raises FileNotFoundError for a missing input, OutputError when
  the output would risk data ingest does not own, NothingUsable when no video decoded; the
  previous output is untouched in every case.
  """
  if not os.path.exists(input_root):
    raise FileNotFoundError(f'{input_root}: input folder does not exist')
  wanted = provenance_for(input_root, **ingest_kwargs)
  check_target(input_root, output_dir, wanted, overwrite, flags)
  with staged(output_dir, wanted) as staging:
    summary = ingest.ingest(input_root, staging, **ingest_kwargs)
    if summary.num_written == 0:
      raise NothingUsable(summary)
    summary.output_dir = output_dir
    summary.write(staging)
  return summary
