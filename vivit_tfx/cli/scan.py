"""`vivit-tfx scan`: an archive of videos scored on Apache Beam."""
from __future__ import annotations

import argparse
import shlex

from vivit_tfx.cli.common import (UserError, add_serving_arguments, finite_float, chosen_model,
                                  one_line, quiet)
from vivit_tfx.scan import options as scan_options


def _cmd_scan(args) -> int:
  # loads TensorFlow and Beam
  from vivit_tfx.scan import scan  # pylint: disable=g-import-not-at-top
  quiet()
  try:
    return scan.main(config_from_args(args, chosen_model(args)))
  except (ValueError, OSError, scan.ScanFailed) as e:
    raise UserError(one_line(e)) from None


def _add_scan_arguments(p: argparse.ArgumentParser) -> None:
  """The scan's own options (the model's: --model-dir, --serving-dir, …, added beside them)."""
  p.add_argument('input', metavar='INPUT',
                 help='videos: a folder (searched recursively), a glob or a gs:// prefix')
  p.add_argument('--out', required=True, help='folder for scan.csv, drift.json and each '
                 "video's segments JSON and timeline PNG (videos/); a rerun resumes in it")
  p.add_argument('--stride-s', type=finite_float, default=1.0, help='score a window every this often')
  p.add_argument('--threshold', type=finite_float, default=0.5,
                 help='a flagged segment is windows at or above this P(positive class)')
  p.add_argument('--batch-size', type=int, default=16, help='windows per RunInference batch')
  p.add_argument('--range-s', type=finite_float, default=300.0,
                 help='seconds of a video one work item decodes: longer videos are split into '
                 'ranges that different workers decode')
  p.add_argument('--workers', type=int, default=0,
                 help='DirectRunner worker processes (0: one per core; 1: this process)')
  p.add_argument('--threads-per-worker', type=int, default=0,
                 help='decoder and TensorFlow threads of each worker (0: their defaults)')
  p.add_argument('--beam-args', default='',
                 help="Beam pipeline options passed through, e.g. '--runner=DataflowRunner "
                 "--project=… --region=… --temp_location=gs://…' (docs/live-and-serving.md)")
  p.add_argument('--reference', default='auto',
                 help="drift check: the training split's clips (an ingest output folder with "
                 "train/, or a TFX Examples artifact with Split-train/); 'auto': the train "
                 "split's statistics the model carries (assets.extra/drift_reference.stats."
                 "pbtxt), else the Examples the model was trained on, found in ML Metadata "
                 "(--metadata); 'none': no check")
  p.add_argument('--metadata', default='output/metadata.sqlite',
                 help="--reference auto: the ML Metadata store of the run that pushed the model")
  p.add_argument('--drift-threshold', type=finite_float, default=0.3,
                 help='a feature has drifted when its Jensen-Shannon divergence from the '
                 'reference is above this')


def config_from_args(args, model: str) -> scan_options.ScanConfig:
  """The ScanConfig of `vivit-tfx scan`'s parsed options and the model it uses."""
  return scan_options.ScanConfig(input=args.input, out=args.out, model_dir=model,
                    stride_s=args.stride_s, threshold=args.threshold,
                    batch_size=args.batch_size, range_s=args.range_s, workers=args.workers,
                    threads_per_worker=args.threads_per_worker,
                    beam_args=shlex.split(args.beam_args),
                    reference='' if args.reference == 'none' else args.reference,
                    metadata_path=args.metadata,
                    drift_threshold=args.drift_threshold)


def add_parsers(sub) -> None:
  p = sub.add_parser('scan', help='score an archive of videos on Apache Beam (resumable): '
                     'timelines, one CSV, drift against the training split')
  _add_scan_arguments(p)
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  add_serving_arguments(p)
  p.set_defaults(func=_cmd_scan)
