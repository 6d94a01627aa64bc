"""The optional parts of the install (setup.py's extras): the core runs the pipeline, the
Trainer and the Beam workers; `serve` adds the web server, `report` the figures. A command
that needs a missing extra stops with one line naming it and the pip command."""
from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

DISTRIBUTION = 'vivit-violence-tfx'
# extra: the top-level modules it provides (its distributions are setup.py's extras_require).
# `serve` holds `report`'s too: its review page draws timelines and attention maps.
MODULES = {'serve': ('starlette', 'uvicorn', 'matplotlib'), 'report': ('matplotlib',)}


class MissingExtra(SystemExit):
  """A module of an extra is not installed. A SystemExit, so that no `except Exception` (a
  tool going on after one bad video) takes it for a failure of one input; the CLI prints
  `line(command)`, and uncaught it still ends the program with its message and status 1."""

  def __init__(self, extra: str, module: str):
    super().__init__(f"the {extra} extra is not installed (no module '{module}'): "
                     f'{install_command(extra)}')
    self.extra, self.module = extra, module

  def line(self, command: str) -> str:
    return f'vivit-tfx {command} needs the {self.extra} extra: {install_command(self.extra)}'


def install_command(extra: str) -> str:
  return f"pip install '{DISTRIBUTION}[{extra}]'"


@contextlib.contextmanager
def needed(extra: str) -> Iterator[None]:
  """Around the imports of an extra's modules: a missing one raises `MissingExtra`."""
  try:
    yield
  except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] not in MODULES[extra]:
      raise
    raise MissingExtra(extra, e.name) from None


def require(*names: str) -> None:
  """Imports every module of the named extras (before a command does any work)."""
  for extra in names:
    with needed(extra):
      for module in MODULES[extra]:
        importlib.import_module(module)


def pyplot():
  """matplotlib.pyplot drawing into files (Agg backend)."""
  with needed('report'):
    # optional: matplotlib is the [report] extra, not in the Trainer/Beam image.
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
