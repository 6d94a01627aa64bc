"""Which cameras `vivit-tfx watch` watches: its positional sources and a `--sources` file.

A source is `name=SOURCE` or `SOURCE` (a file, a webcam index, an rtsp:// or http(s):// URL);
an unnamed one is called `cam<k>` by its place in the list (the file's sources come after the
positional ones). A name is letters, digits, `_`, `.` and `-` (it names the camera's snapshot
folder); a URL's own `=` (`rtsp://host/s?channel=1`) is not a name, since what comes before
it is not one. In the file: one source per line; blank lines and lines starting with `#` are
skipped. One positional source without a name and no file: today's single unnamed source.
"""
from __future__ import annotations

import os
import re
from typing import List, Sequence, Tuple

from vivit_tfx.inference.watch import Camera

NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


def parse(entry: str, default_name: str) -> Camera:
  """'name=SOURCE' → Camera(name, SOURCE); 'SOURCE' → Camera(default_name, SOURCE)."""
  head, sep, tail = entry.partition('=')
  if sep and NAME.match(head) and not os.path.exists(entry):
    return Camera(head, tail.strip())
  return Camera(default_name, entry)


def read_sources(path: str) -> List[Tuple[str, int]]:
  """(entry, line number) of each source line of a `--sources` file."""
  try:
    with open(path, encoding='utf-8') as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: cannot read the sources file ({e})') from None
  entries = [(line.strip(), n) for n, line in enumerate(lines, 1)
             if line.strip() and not line.strip().startswith('#')]
  if not entries:
    raise ValueError(f'{path}: no sources in the file (one per line: name=SOURCE or SOURCE)')
  return entries


def cameras(sources: Sequence[str], sources_file: str = '') -> Tuple[Camera, ...]:
  """The cameras to watch; raises ValueError with the one-line reason (an empty source, a
  name given twice)."""
  entries = [(s, f'source {k}') for k, s in enumerate(sources, 1)]
  if sources_file:
    entries += [(e, f'{sources_file}:{n}') for e, n in read_sources(sources_file)]
  if not entries:
    raise ValueError('no source: give one or more sources, or --sources FILE')
  found = [(parse(e, ''), where) for e, where in entries]
  if len(found) == 1 and not sources_file and not found[0][0].name:
    return (found[0][0],)  # one unnamed source, as before
  found = [(Camera(c.name or f'cam{k}', c.source), where)
           for k, (c, where) in enumerate(found, 1)]
  seen = {}
  for camera, where in found:
    if not camera.source:
      raise ValueError(f'{where}: camera {camera.name!r} has no source')
    if camera.name in seen:
      raise ValueError(f'{where}: camera name {camera.name!r} is also used at {seen[camera.name]}')
    seen[camera.name] = where
  return tuple(c for c, _ in found)
