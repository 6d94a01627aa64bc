"""Files a command writes into a folder the user names (`--out-dir`): never over a user's file.

A folder's `.vivit-tfx-outputs.json` lists the names this project wrote there. A name that
exists and is not listed is the user's: the command stops with one line (exit 1) before writing
anything, unless the user passes `--overwrite`. Names the project wrote before are replaced (a
rerun refreshes its own figures). A name is listed only once its file has been written.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import List

MARKER = '.vivit-tfx-outputs.json'


class OutputExists(ValueError):
  """A file the project did not write is in the way; the message is one line."""


class OutputFolder:
  """A folder this command writes named files into: `claim` the names, write, then `done`."""

  def __init__(self, directory: str, overwrite: bool = False):
    self.directory = directory
    self.overwrite = overwrite
    self._claimed: List[str] = []

  def _owned(self) -> List[str]:
    try:
      with open(os.path.join(self.directory, MARKER)) as f:
        return list(json.load(f).get('files', []))
    except (OSError, ValueError, AttributeError):
      return []

  def claim(self, *names: str) -> List[str]:
    """The paths of `names` in the folder (created); raises OutputExists, before anything is
    written, if one is a file the project did not write there."""
    owned = self._owned()
    for name in names:
      path = os.path.join(self.directory, name)
      if os.path.lexists(path) and name not in owned and not self.overwrite:
        raise OutputExists(f'{path} exists and was not written by vivit-tfx: left as it is '
                           '(choose another --out-dir, or pass --overwrite to replace it)')
    os.makedirs(self.directory, exist_ok=True)
    self._claimed += names
    return [os.path.join(self.directory, n) for n in names]

  def done(self) -> None:
    """Lists the claimed names that were written as the project's (atomic replace)."""
    written = [n for n in self._claimed if os.path.lexists(os.path.join(self.directory, n))]
    files = sorted(set(self._owned()) | set(written))
    fd, scratch = tempfile.mkstemp(prefix=MARKER, dir=self.directory)
    with os.fdopen(fd, 'w') as f:
      json.dump({'files': files}, f, indent=1)
    os.replace(scratch, os.path.join(self.directory, MARKER))
