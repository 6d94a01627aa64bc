"""`vivit-tfx`: the project's one command (make-synthetic, ingest, run, compile, lineage, …)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Google client libraries warn about Python 3.10 on every import; TFX 1.16 needs 3.10.
warnings.filterwarnings('ignore', category=FutureWarning)


class UserError(Exception):
  """An error caused by the user's input; printed as one line, without a traceback."""


def _size(text: str):
  try:
    h, w = (int(v) for v in text.lower().split('x')) if 'x' in text.lower() else (int(text),) * 2
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected SIZE or HxW, got {text!r}') from None
  return h, w


def _cmd_make_synthetic(args) -> int:
  from components import synthetic  # pylint: disable=g-import-not-at-top
  config = synthetic.SyntheticConfig(num_clips=args.num_clips, seed=args.seed)
  paths = synthetic.generate(args.output, config, workers=args.workers)
  if args.with_bad_inputs:
    bad = synthetic.add_bad_inputs(args.output)
    print(f'added {len(bad)} hostile inputs: ' + ', '.join(sorted(bad.values())))
  print(f'make-synthetic: wrote {len(paths)} videos to {args.output}')
  return 0


def _cmd_ingest(args) -> int:
  from components import ingest  # pylint: disable=g-import-not-at-top
  try:
    summary = ingest.ingest(
        args.input, args.output,
        clip=ingest.ClipConfig(num_frames=args.num_frames, frame_size=args.frame_size,
                               jpeg_quality=args.jpeg_quality),
        splits=ingest.SplitConfig(train=args.train, eval=args.eval, test=args.test,
                                  seed=args.seed),
        clips_per_shard=args.clips_per_shard, workers=args.workers)
  except FileNotFoundError as e:
    raise UserError(str(e)) from None
  print(summary.to_text())
  print(f'  manifest: {os.path.join(args.output, ingest.MANIFEST)}')
  if summary.num_written == 0:
    raise UserError(f'no usable video under {args.input}: nothing was written '
                    f'({len(summary.skipped)} inputs skipped, see the manifest)')
  return 0


def _cmd_run(args) -> int:
  from pipeline import configs, local_runner  # pylint: disable=g-import-not-at-top
  config = configs.from_args(args)
  try:
    summary = local_runner.run(config)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'pipeline failed: {str(e).strip().splitlines()[0] if str(e) else type(e).__name__}'
                    f' (details above; metadata: {config.metadata_path})') from None
  print(summary.to_text())
  return 0


def _cmd_compile(args) -> int:
  from kubeflow import runner  # pylint: disable=g-import-not-at-top
  try:
    config, deployment = runner.from_args(args)
    path = runner.compile_pipeline(config, deployment)
  except ValueError as e:
    raise UserError(str(e)) from None
  print(f'compile: wrote the Kubeflow Pipelines v2 spec {path}\n'
        f'  image {deployment.image}, pipeline root {config.pipeline_root}\n'
        f'  beam args: {config.beam_args}')
  if '<' in config.beam_args:
    print('  note: fill in the <…> values of the Beam preset with --beam-args '
          "'--project=… --region=…' (later values win)")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='vivit-tfx',
      description='Violence detection in video with ViViT on TFX 1.16: data, pipeline, '
      'Kubeflow, lineage.')
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

  p = sub.add_parser('make-synthetic', help='write the synthetic labelled video dataset')
  p.add_argument('--output', default='data/synthetic_videos', help='RLVS-layout folder to write')
  p.add_argument('--num-clips', type=int, default=200)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--workers', type=int, default=0, help='processes (0: one per core)')
  p.add_argument('--with-bad-inputs', action='store_true',
                 help='also write corrupt and non-video files (to see how ingest copes)')
  p.set_defaults(func=_cmd_make_synthetic)

  p = sub.add_parser('ingest', help='video folder → clip TFRecords per split + manifest')
  p.add_argument('--input', default='data/synthetic_videos',
                 help='folder with Violence/ and NonViolence/')
  p.add_argument('--output', default='data/clips', help='folder for split TFRecords')
  p.add_argument('--num-frames', type=int, default=8, help='frames per clip (T)')
  p.add_argument('--frame-size', type=_size, default=(64, 64), help='HxW of stored frames')
  p.add_argument('--jpeg-quality', type=int, default=90)
  p.add_argument('--train', type=float, default=0.7)
  p.add_argument('--eval', type=float, default=0.15)
  p.add_argument('--test', type=float, default=0.15)
  p.add_argument('--seed', type=int, default=42, help='split seed')
  p.add_argument('--clips-per-shard', type=int, default=256)
  p.add_argument('--workers', type=int, default=0, help='processes (0: one per core)')
  p.set_defaults(func=_cmd_ingest)

  from pipeline import configs  # pylint: disable=g-import-not-at-top
  p = sub.add_parser('run', help='main job: data if absent, then the whole TFX pipeline on '
                     'LocalDagRunner, then a summary')
  configs.add_arguments(p)
  p.set_defaults(func=_cmd_run)

  from kubeflow import options as kubeflow_options  # pylint: disable=g-import-not-at-top
  p = sub.add_parser('compile', help='compile the pipeline to a Kubeflow Pipelines v2 spec')
  kubeflow_options.add_arguments(p)
  configs.add_arguments(p, exclude=('pipeline_root_uri', 'output_root'))
  p.set_defaults(func=_cmd_compile)

  for register in _EXTRA_COMMANDS:
    register(sub)
  return parser


# Later steps (run, compile, lineage, predict, bench) add their sub-commands here.
_EXTRA_COMMANDS = []


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except UserError as e:
    print(f'vivit-tfx {args.command}: error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130


def print_json(obj) -> None:
  print(json.dumps(obj, indent=1, default=str, ensure_ascii=False))


if __name__ == '__main__':
  sys.exit(main())
