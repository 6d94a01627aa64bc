"""`vivit-tfx`: the project's one command (make-synthetic, ingest, run, compile, lineage, …)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from typing import List, Optional

from vivit_tfx.pipeline.configs import parse_size

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Google client libraries warn about Python 3.10 on every import; TFX 1.16 needs 3.10.
warnings.filterwarnings('ignore', category=FutureWarning)


class UserError(Exception):
  """An error caused by the user's input; printed as one line, without a traceback."""


def _labels(text: str) -> List[int]:
  if not text or set(text) - {'0', '1'}:
    raise argparse.ArgumentTypeError(f'expected a string of 0/1 labels such as 0110, got {text!r}')
  return [int(c) for c in text]


def _cmd_make_synthetic(args) -> int:
  from vivit_tfx.components import synthetic  # pylint: disable=g-import-not-at-top
  if args.long:
    os.makedirs(os.path.dirname(os.path.abspath(args.long)) or '.', exist_ok=True)
    truth = synthetic.long_video(args.long, args.segments, segment_s=args.segment_s, seed=args.seed)
    print(f'make-synthetic: wrote {args.long} ({len(truth)} segments of {args.segment_s} s, '
          f'truth in {args.long}.segments.json)')
    return 0
  config = synthetic.SyntheticConfig(num_clips=args.num_clips, seed=args.seed)
  paths = synthetic.generate(args.output, config, workers=args.workers)
  if args.with_bad_inputs:
    bad = synthetic.add_bad_inputs(args.output)
    print(f'added {len(bad)} hostile inputs: ' + ', '.join(sorted(bad.values())))
  print(f'make-synthetic: wrote {len(paths)} videos to {args.output}')
  return 0


def _cmd_ingest(args) -> int:
  from vivit_tfx.components import ingest  # pylint: disable=g-import-not-at-top
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
  from vivit_tfx.pipeline import configs, local_runner  # pylint: disable=g-import-not-at-top
  try:
    config = configs.from_args(args)
    print(config.model_summary())  # the effective model config, once
  except ValueError as e:
    raise UserError(str(e)) from None
  if config.init_checkpoint:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if not tf.io.gfile.exists(config.init_checkpoint):
      raise UserError(f'--init-checkpoint {config.init_checkpoint}: no such file (pass an image '
                      'ViT .npz; nothing is downloaded)')
  try:
    summary = local_runner.run(config)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'pipeline failed: {str(e).strip().splitlines()[0] if str(e) else type(e).__name__}'
                    f' (details above; metadata: {config.metadata_path})') from None
  print(summary.to_text())
  return 0


def _cmd_compile(args) -> int:
  from vivit_tfx.kubeflow import runner  # pylint: disable=g-import-not-at-top
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


def _quiet() -> None:
  """Read-only commands: keep library deprecation chatter off the user's screen."""
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)
  logging.getLogger('tensorflow').setLevel(logging.ERROR)


def _store(args):
  from vivit_tfx.audit import metadata  # pylint: disable=g-import-not-at-top
  if not (args.mysql_host or args.grpc_host) and not os.path.exists(args.metadata):
    raise UserError(f'{args.metadata}: no metadata store (run `vivit-tfx run` first, or pass '
                    '--metadata / --mysql-host / --grpc-host)')
  return metadata.open_store(metadata.connection_config(
      sqlite_path=args.metadata, mysql_host=args.mysql_host, mysql_port=args.mysql_port,
      mysql_database=args.mysql_database, mysql_user=args.mysql_user,
      mysql_password=args.mysql_password, grpc_host=args.grpc_host, grpc_port=args.grpc_port))


def _cmd_lineage(args) -> int:
  from vivit_tfx.audit import lineage  # pylint: disable=g-import-not-at-top
  _quiet()
  store = _store(args)
  try:
    if args.compare:
      diff = lineage.compare_runs(store, args.pipeline_name, *args.compare)
      if args.json:
        print_json(diff)
      else:
        for section in ('inputs', 'hyperparameters', 'metrics'):
          print(f'{section}:' + ('' if diff[section] else ' identical'))
          for k, (a, b) in diff[section].items():
            print(f'  {k}: {a!r} → {b!r}')
        print(f'blessed: {diff["blessed"][0]} → {diff["blessed"][1]}')
      return 0
    if args.runs:
      print(lineage.runs_text(store, args.pipeline_name))
      return 0
    graph = lineage.upstream(store, lineage.pushed_model(store, args.artifact_id))
  except ValueError as e:
    raise UserError(str(e)) from None
  os.makedirs(args.out_dir, exist_ok=True)
  dot = os.path.join(args.out_dir, 'lineage.dot')
  with open(dot, 'w') as f:
    f.write(lineage.to_dot(graph))
  png = lineage.to_png(graph, os.path.join(args.out_dir, 'lineage.png'))
  if args.json:
    print_json({**graph.to_json(), 'dot': dot, 'png': png})
  else:
    print(lineage.runs_text(store, args.pipeline_name))
    print()
    print(lineage.chain_text(graph))
    print(f'\nlineage graph: {png} (DOT: {dot})')
  return 0


def _model_dir(args) -> str:
  from vivit_tfx.inference import predict  # pylint: disable=g-import-not-at-top
  return args.model_dir or predict.newest_version(args.serving_dir, args.model_name)


def _cmd_predict(args) -> int:
  from vivit_tfx.inference import predict  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    model_dir = _model_dir(args)
    if args.rest_request:
      print_json(predict.rest_request(args.videos[0], model_dir))
      return 0
    if args.timeline:
      from vivit_tfx.inference import timeline  # pylint: disable=g-import-not-at-top
      for video in args.videos:
        result = timeline.run(video, model_dir, args.out_dir, args.window_s, args.stride_s,
                              args.threshold)
        if args.json:
          print_json(result)
          continue
        print(f'{video}: {len(result["windows"])} windows, {len(result["segments"])} '
              f'violent segment(s) ≥ {args.threshold}')
        for seg in result['segments']:
          print(f'  {seg["start_s"]:8.1f} s – {seg["end_s"]:8.1f} s  peak {seg["peak_score"]:.3f}')
        print(f'  timeline: {result["png"]}\n  segments: {result["json"]}')
      return 0
    results = predict.predict(args.videos, model_dir)
  except ValueError as e:
    raise UserError(str(e)) from None
  if args.json:
    print_json({'model': model_dir, 'predictions': [dataclasses.asdict(r) for r in results]})
  else:
    print(f'model: {model_dir}')
    for r in results:
      print(r.to_text())
  return 0 if any(r.error is None for r in results) else 1


def _cmd_attention(args) -> int:
  from vivit_tfx.inference import explain  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    model_dir = _model_dir(args)
    for video in args.videos:
      out = explain.render(video, model_dir, args.out_dir, args.method)
      print(f'{video}: token grid {out["grid"]}\n  strip: {out["png"]}\n  gif: {out["gif"]}')
  except ValueError as e:
    raise UserError(str(e)) from None
  return 0


def _cmd_report(args) -> int:
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  _quiet()
  if not os.path.exists(configs.from_args(args).metadata_path):
    raise UserError(f'{configs.from_args(args).metadata_path}: no metadata store (run '
                    '`vivit-tfx run` first, or pass --output-root)')
  try:
    page = report.build(configs.from_args(args), args.run_id or None, args.out_dir or None)
  except ValueError as e:
    raise UserError(str(e)) from None
  print(f'report: {page}')
  return 0


def _cmd_bench(args) -> int:
  if args.what == 'model':
    from vivit_tfx.bench import model_bench  # pylint: disable=g-import-not-at-top
    return model_bench.main(args.rest)
  if args.what == 'train':
    from vivit_tfx.bench import train_bench  # pylint: disable=g-import-not-at-top
    return train_bench.main(args.rest)
  if args.what == 'export':
    from vivit_tfx.bench import export_size  # pylint: disable=g-import-not-at-top
    return export_size.main(args.rest)
  from vivit_tfx.bench import pipeline_bench  # pylint: disable=g-import-not-at-top
  return pipeline_bench.main(args.rest)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
  """Videos to look at and which pushed model to use (predict, attention)."""
  p.add_argument('videos', nargs='+', help='video files (any container ingest reads)')
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  p.add_argument('--serving-dir', default='output/serving')
  p.add_argument('--model-name', default='vivit_violence')


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
  p.add_argument('--long', default='', metavar='PATH.mp4',
                 help='instead: one long video of violent/non-violent segments')
  p.add_argument('--segments', type=_labels, default='0101001',
                 help='labels of the segments, e.g. 0110 (1 = violent)')
  p.add_argument('--segment-s', type=float, default=4.0)
  p.set_defaults(func=_cmd_make_synthetic)

  p = sub.add_parser('ingest', help='video folder → clip TFRecords per split + manifest')
  p.add_argument('--input', default='data/synthetic_videos',
                 help='folder with Violence/ and NonViolence/')
  p.add_argument('--output', default='data/clips', help='folder for split TFRecords')
  p.add_argument('--num-frames', type=int, default=8, help='frames per clip (T)')
  p.add_argument('--frame-size', type=parse_size, default=(64, 64), help='HxW of stored frames')
  p.add_argument('--jpeg-quality', type=int, default=90)
  p.add_argument('--train', type=float, default=0.7)
  p.add_argument('--eval', type=float, default=0.15)
  p.add_argument('--test', type=float, default=0.15)
  p.add_argument('--seed', type=int, default=42, help='split seed')
  p.add_argument('--clips-per-shard', type=int, default=256)
  p.add_argument('--workers', type=int, default=0, help='processes (0: one per core)')
  p.set_defaults(func=_cmd_ingest)

  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  p = sub.add_parser('run', help='main job: data if absent, then the whole TFX pipeline on '
                     'LocalDagRunner, then a summary')
  configs.add_arguments(p)
  p.set_defaults(func=_cmd_run)

  from vivit_tfx.kubeflow import options as kubeflow_options  # pylint: disable=g-import-not-at-top
  p = sub.add_parser('compile', help='compile the pipeline to a Kubeflow Pipelines v2 spec')
  kubeflow_options.add_arguments(p)
  configs.add_arguments(p, exclude=('pipeline_root_uri', 'output_root'))
  p.set_defaults(func=_cmd_compile)

  p = sub.add_parser('lineage', help='trace the pushed model back to its data in ML Metadata')
  p.add_argument('--metadata', default='output/metadata.sqlite', help='sqlite store (local runs)')
  p.add_argument('--mysql-host', default='')
  p.add_argument('--mysql-port', type=int, default=3306)
  p.add_argument('--mysql-database', default='metadb')
  p.add_argument('--mysql-user', default='root')
  p.add_argument('--mysql-password', default='')
  p.add_argument('--grpc-host', default='',
                 help='ML Metadata gRPC service (Kubeflow: metadata-grpc-service.kubeflow)')
  p.add_argument('--grpc-port', type=int, default=8080)
  p.add_argument('--pipeline-name', default='vivit-violence')
  p.add_argument('--artifact-id', type=int, default=None,
                 help='PushedModel artifact id (default: the newest pushed)')
  p.add_argument('--runs', action='store_true', help='only list runs and their executions')
  p.add_argument('--compare', nargs=2, metavar=('RUN_A', 'RUN_B'),
                 help='what changed between two runs: inputs, hyperparameters, metrics')
  p.add_argument('--out-dir', default='output/lineage', help='where lineage.dot/.png go')
  p.add_argument('--json', action='store_true')
  p.set_defaults(func=_cmd_lineage)

  p = sub.add_parser('predict', help='classify video files with the pushed model')
  _add_model_arguments(p)
  p.add_argument('--json', action='store_true')
  p.add_argument('--rest-request', action='store_true',
                 help="print the TF Serving REST :predict body for the first video")
  p.add_argument('--timeline', action='store_true',
                 help='score sliding windows over each (long) video: PNG + JSON segments')
  p.add_argument('--window-s', type=float, default=2.0)
  p.add_argument('--stride-s', type=float, default=1.0)
  p.add_argument('--threshold', type=float, default=0.5)
  p.add_argument('--out-dir', default='output/timeline')
  p.set_defaults(func=_cmd_predict)

  p = sub.add_parser('attention', help="draw where the pushed model looks in a video's clip")
  _add_model_arguments(p)
  p.add_argument('--method', default='auto', choices=['auto', 'rollout', 'gradient'],
                 help='auto: attention rollout for Model 1, gradient x input otherwise')
  p.add_argument('--out-dir', default='output/attention')
  p.set_defaults(func=_cmd_attention)

  p = sub.add_parser('report', help='HTML report of a pipeline run (from ML Metadata)')
  p.add_argument('--run-id', default='', help='default: the latest run')
  p.add_argument('--out-dir', default='', help='default: <output-root>/reports/<run id>')
  configs.add_arguments(p)
  p.set_defaults(func=_cmd_report)

  p = sub.add_parser('bench', help='benchmarks that print their figures (model, pipeline, '
                     'train, export)')
  p.add_argument('what', choices=['model', 'pipeline', 'train', 'export'])
  p.add_argument('rest', nargs=argparse.REMAINDER, help='options of the benchmark')
  p.set_defaults(func=_cmd_bench)
  return parser


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
