"""Beam options of the pipeline's Beam components (VideoExampleGen, StatisticsGen, Transform,
Evaluator) and of `scan`: which runner they name, and what TFX must not build for the
DirectRunner. No Beam import (the CLI's `--help` stays fast)."""
from __future__ import annotations

from typing import List, Sequence

# Without one of these options, TFX's Beam executors (BaseBeamExecutor) copy the installed `tfx`
# package and build an sdist of it for every component, to stage it for remote workers
# (tfx/utils/dependency_utils.py, TFX 1.16): about 2 CPU seconds per component and a 49 MB
# folder left in the temporary directory, per component and run.
TFX_DEPENDENCY_OPTIONS = ('--extra_package', '--extra_packages', '--setup_file',
                          '--requirements_file', '--sdk_container_image',
                          '--worker_harness_container_image')
# The DirectRunner stages nothing and runs its workers in this Python environment (in memory,
# or `sdk_worker_main` subprocesses): it ignores this option, which tells TFX not to build one.
NOTHING_TO_STAGE = '--sdk_container_image=unused-by-the-DirectRunner'


def has(args: Sequence[str], name: str) -> bool:
  """Is option `name` (`--x`) among `args`, as `--x=value` or `--x value`?"""
  return any(a == name or a.startswith(name + '=') for a in args)


def is_direct(args: Sequence[str]) -> bool:
  """Do `args` run on the DirectRunner (no --runner, or --runner=DirectRunner)?"""
  return not has(args, '--runner') or any(
      a in ('--runner=DirectRunner', '--runner=direct') for a in args)


def for_tfx(args: Sequence[str]) -> List[str]:
  """`args` for TFX's Beam components: on the DirectRunner, with `NOTHING_TO_STAGE` unless they
  name their own dependencies; on other runners, as given (TFX then stages its sdist, or the
  runner's image holds the code: the Dataflow preset names the pipeline's image)."""
  args = list(args)
  if is_direct(args) and not any(has(args, name) for name in TFX_DEPENDENCY_OPTIONS):
    args.append(NOTHING_TO_STAGE)
  return args
