"""`vivit-tfx`: the project's one command, one module per command group.

  data        make-synthetic, ingest
  pipeline    run (LocalDagRunner), compile (Kubeflow Pipelines v2); config_options turns
              PipelineConfig's fields into their options
  audit       lineage, report
  inference   predict, attention, export, checkpoint
  scan        scan
  serving     watch, serve, reviews
  bench       bench
Each command imports the modules that load TensorFlow, TFX or OpenCV itself, inside its
function: `--help` and a mistyped option answer at once.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import List, Optional

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Google client libraries warn about Python 3.10 on every import; TFX 1.16 needs 3.10.
warnings.filterwarnings('ignore', category=FutureWarning)

# pylint: disable=g-import-not-at-top,wrong-import-position  # after the environment is set
from vivit_tfx import extras
from vivit_tfx.cli import audit, bench, data, inference, pipeline, scan, serving
from vivit_tfx.cli.common import UserError


GROUPS = (data, pipeline, audit, inference, scan, serving, bench)  # the order of --help


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='vivit-tfx',
      description='Violence detection in video with ViViT on TFX 1.16: data, pipeline, '
      'Kubeflow, lineage.')
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
  for group in GROUPS:
    group.add_parsers(sub)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except UserError as e:
    for line in str(e).splitlines() or ['failed']:
      print(f'vivit-tfx {args.command}: error: {line}', file=sys.stderr)
    return 1
  except extras.MissingExtra as e:  # a command run without its setup.py extra
    print(e.line(args.command), file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130
