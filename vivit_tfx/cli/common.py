"""What every command group shares: the one-line user error, option types, the model a
command uses, and going on after a bad input."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Callable, Iterator, List, Tuple

from absl import logging as absl_logging

from vivit_tfx.data import clip_config


class UserError(Exception):
  """An error caused by the user's input; printed as one line, without a traceback."""


def labels(text: str) -> List[int]:
  if not text or set(text) - {'0', '1'}:
    raise argparse.ArgumentTypeError(f'expected a string of 0/1 labels such as 0110, got {text!r}')
  return [int(c) for c in text]


def finite_float(text: str) -> float:
  """A float option's value: inf and nan are refused (as `configs.option_errors` does)."""
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f'expected a finite number, got {text!r}')
  return value


def positive_int(text: str, least: int = 1) -> int:
  try:
    value = int(text)
  except ValueError:
    value = least - 1
  if value < least:
    raise argparse.ArgumentTypeError(
        f"expected a {'positive' if least == 1 else 'non-negative'} integer, got {text!r}")
  return value


def non_negative_int(text: str) -> int:
  return positive_int(text, least=0)


def one_line(error: Exception, limit: int = 600) -> str:
  """The error's first line; one longer than `limit` keeps its start and its end (where a
  message names its file) around an ellipsis."""
  text = str(error).strip().splitlines()
  if not text:
    return type(error).__name__
  line, half = text[0], limit // 2
  return line if len(line) <= limit else f'{line[:half]} … {line[-half:]}'


def print_json(obj) -> None:
  print(json.dumps(obj, indent=1, default=str, ensure_ascii=False))


def quiet() -> None:
  """Read-only commands: keep library deprecation chatter off the user's screen."""
  absl_logging.set_verbosity(absl_logging.ERROR)
  logging.getLogger('tensorflow').setLevel(logging.ERROR)


def chosen_model(args, tflite: bool = False) -> str:
  """--model-dir (a SavedModel, or a folder of numbered versions: the newest, as `serve` and
  `watch` take it; with `tflite`, also a .tflite model of `vivit-tfx export`), else the newest
  pushed version."""
  # loads TensorFlow
  from vivit_tfx.inference import predict, rest  # pylint: disable=g-import-not-at-top
  if args.model_dir.endswith(clip_config.TFLITE_SUFFIX):
    if not tflite:
      raise UserError(f'--model-dir {args.model_dir}: vivit-tfx {args.command} takes a '
                      'SavedModel, not a TFLite model')
    if not os.path.isfile(args.model_dir):
      raise UserError(f'--model-dir {args.model_dir}: no such file')
    return args.model_dir
  if args.model_dir:
    return rest.version_dir(args.model_dir)[0]
  return predict.newest_version(args.serving_dir, args.model_name)


def accounted(inputs: List[str], skipped: List[str]) -> int:
  """The exit status of a command that goes on after a bad input: 1 when any was skipped,
  with one line that counts them against every input given."""
  if skipped:
    print(f'skipped {len(skipped)} of {len(inputs)} input(s): ' + ', '.join(skipped),
          file=sys.stderr)
  return 1 if skipped else 0


def refuse_non_videos(paths: List[str]) -> Tuple[List[str], List[str]]:
  """(the paths that look like video files, the others); each other one gets one line on
  stderr."""
  # loads OpenCV
  from vivit_tfx.data import video_reader  # pylint: disable=g-import-not-at-top
  kept, refused = [], []
  for path in paths:
    if not os.path.isfile(path):
      reason = 'no such file' if not os.path.exists(path) else 'not a regular file'
    elif not path.lower().endswith(video_reader.VIDEO_EXTENSIONS):
      reason = f'unsupported extension {os.path.splitext(path)[1] or "(none)"!r}'
    else:
      kept.append(path)
      continue
    refused.append(path)
    print(f'{path}: skipped: {reason}', file=sys.stderr)
  return kept, refused


def each(videos: List[str], work: Callable[[str, str], dict], skipped: List[str]) -> Iterator:
  """Yields (video, work(video, its output stem)) per video, going on after one that fails:
  its error is one line on stderr, and it joins `skipped`."""
  # loads OpenCV
  from vivit_tfx.inference import timeline  # pylint: disable=g-import-not-at-top
  stems = timeline.output_stems(videos)  # distinct even where basenames are not
  for video in videos:
    try:
      result = work(video, stems[video])
    except Exception as e:  # pylint: disable=broad-except
      skipped.append(video)
      print(f'{video}: error: {one_line(e)}', file=sys.stderr)
      continue
    yield video, result


def add_overwrite_argument(p: argparse.ArgumentParser) -> None:
  p.add_argument('--overwrite', action='store_true',
                 help='replace files of the same names in --out-dir that vivit-tfx did not '
                 'write (without it they are left as they are and the command stops)')


SERVING_DIR_HELP = "the Pusher's destination: <serving-dir>/<model-name>/<version>/"


def add_serving_arguments(p: argparse.ArgumentParser) -> None:
  """Where the newest pushed model is found when --model-dir is not given."""
  p.add_argument('--serving-dir', default='output/serving', help=SERVING_DIR_HELP)
  p.add_argument('--model-name', default='vivit_violence',
                 help='the pushed model to use (as `run --model-name`)')


def add_model_arguments(p: argparse.ArgumentParser) -> None:
  """Videos to look at and which pushed model to use (predict, attention)."""
  p.add_argument('videos', nargs='+', help='video files (any container ingest reads)')
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  add_serving_arguments(p)
