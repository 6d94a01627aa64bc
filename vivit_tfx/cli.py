"""`vivit-tfx`: the project's one command (make-synthetic, ingest, run, compile, lineage, …)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import warnings
from typing import Callable, Iterator, List, Optional, Tuple

from absl import logging as absl_logging

from vivit_tfx import extras, outputs
from vivit_tfx.console import quiet as quiet_console
from vivit_tfx.data import clip_config, layouts
from vivit_tfx.kubeflow import options as kubeflow_options
from vivit_tfx.pipeline import configs, run_guard
from vivit_tfx.scan import options as scan_options

# Each command imports the modules that load TensorFlow, TFX or OpenCV itself, inside its
# function: `--help` and a mistyped option answer at once.

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Google client libraries warn about Python 3.10 on every import; TFX 1.16 needs 3.10.
warnings.filterwarnings('ignore', category=FutureWarning)


class UserError(Exception):
  """An error caused by the user's input; printed as one line, without a traceback."""


def _labels(text: str) -> List[int]:
  if not text or set(text) - {'0', '1'}:
    raise argparse.ArgumentTypeError(f'expected a string of 0/1 labels such as 0110, got {text!r}')
  return [int(c) for c in text]


def _finite_float(text: str) -> float:
  """A float option's value: inf and nan are refused (as `configs.option_errors` does)."""
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f'expected a finite number, got {text!r}')
  return value


def _positive_int(text: str, least: int = 1) -> int:
  try:
    value = int(text)
  except ValueError:
    value = least - 1
  if value < least:
    raise argparse.ArgumentTypeError(
        f"expected a {'positive' if least == 1 else 'non-negative'} integer, got {text!r}")
  return value


def _non_negative_int(text: str) -> int:
  return _positive_int(text, least=0)


def _cmd_make_synthetic(args) -> int:
  # loads TensorFlow
  from vivit_tfx.data import synthetic  # pylint: disable=g-import-not-at-top
  target = args.long or args.output
  if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
    raise UserError(f'{target}: already exists{" and is not empty" if os.path.isdir(target) else ""}'
                    '; make-synthetic writes only to a new path or an empty folder')
  if args.long:
    os.makedirs(os.path.dirname(os.path.abspath(args.long)) or '.', exist_ok=True)
    truth = synthetic.long_video(args.long, args.segments, segment_s=args.segment_s, seed=args.seed)
    print(f'make-synthetic: wrote {args.long} ({len(truth)} segments of {args.segment_s} s, '
          f'truth in {args.long}.segments.json)')
    return 0
  config = (synthetic.hard_config(args.num_clips, args.seed) if args.difficulty == 'hard' else
            synthetic.SyntheticConfig(num_clips=args.num_clips, seed=args.seed))
  paths = synthetic.generate(args.output, config, workers=args.workers)
  if args.with_bad_inputs:
    bad = synthetic.add_bad_inputs(args.output)
    print(f'added {len(bad)} hostile inputs: ' + ', '.join(sorted(bad.values())))
  print(f'make-synthetic: wrote {len(paths)} videos to {args.output}')
  return 0


def _cmd_ingest(args) -> int:
  # loads OpenCV
  from vivit_tfx.data import ingest, ingest_output  # pylint: disable=g-import-not-at-top
  unlabeled = args.layout == 'unlabeled'  # pre-training footage: all to train, no splits
  errors = configs.option_errors({k: v for k, v in vars(args).items()
                                  if not (unlabeled and k in ('train', 'eval', 'test'))})
  if errors:
    raise UserError('\n'.join(errors))
  try:
    summary = ingest_output.ingest_into(
        args.input, args.output, overwrite=args.overwrite, workers=args.workers,
        clip=ingest.ClipConfig(num_frames=args.num_frames, frame_size=args.frame_size,
                               jpeg_quality=args.jpeg_quality, sample_fps=args.sample_fps,
                               max_duration_s=args.max_duration_s),
        splits=ingest.TRAIN_ONLY if unlabeled else ingest.SplitConfig(
            train=args.train, eval=args.eval, test=args.test, seed=args.seed),
        dataset=ingest.DatasetConfig(layout=args.layout,
                                     classes=configs.split_names(args.classes),
                                     positive_class=args.positive_class,
                                     group_regex=args.group_regex),
        clips_per_shard=args.clips_per_shard)
  except ingest_output.NothingUsable as e:
    print(e.summary.to_text())
    raise UserError(f'{e}; {args.output} was left as it was') from None
  except (FileNotFoundError, ValueError) as e:
    raise UserError(str(e)) from None
  print(summary.to_text())
  print(f'  manifest: {os.path.join(args.output, ingest.MANIFEST)}')
  blessing = configs.PipelineConfig  # `run`'s default blessing minimums
  for line in [] if unlabeled else configs.split_warnings(summary.clips, summary.classes,
                                     blessing.min_test_examples_per_class,
                                     blessing.min_test_fraction_per_class, args.test):
    print(f'  warning: {line}')
  return 0


def _cmd_run(args) -> int:
  try:
    config = configs.from_args(args)
  except ValueError as e:
    raise UserError(str(e)) from None
  log = ''
  try:
    config.validate()
  except configs.ConfigError as e:
    raise UserError(str(e)) from None
  if config.init_checkpoint:
    # loads TensorFlow
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if not tf.io.gfile.exists(config.init_checkpoint):
      raise UserError(f'--init-checkpoint {config.init_checkpoint}: no such file or directory '
                      '(pass an image ViT .npz or a Hugging Face model directory; nothing is '
                      'downloaded)')
    from vivit_tfx.models import pixel_preprocessing  # pylint: disable=g-import-not-at-top
    if tf.io.gfile.isdir(config.init_checkpoint) and not pixel_preprocessing.is_hf_directory(
        config.init_checkpoint):
      raise UserError(f'--init-checkpoint {config.init_checkpoint}: a folder without config.json '
                      'is not a Hugging Face model directory')
  # loads TensorFlow and TFX: only once the options are known to be valid
  from vivit_tfx.data import prepare  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  try:
    _check_checkpoints(config)
    prepare.check_data(config)  # before anything is written: no logs, no lock
  except prepare.DataError as e:
    raise UserError(str(e)) from None
  print(config.model_summary())  # the effective model config, once
  try:
    with quiet_console(os.path.join(config.output_root, 'logs'), args.verbose) as log:
      summary = local_runner.run(config)
  except (prepare.DataError, run_guard.BusyError) as e:
    raise UserError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'pipeline failed: {str(e).strip().splitlines()[0] if str(e) else type(e).__name__}'
                    f' (details above and in {log}; metadata: {config.metadata_path})') from None
  print(summary.to_text())
  print(f'  log: {log}')
  return 0


def _check_checkpoints(config) -> None:
  """The checkpoints the run will load, loaded now as its Trainers will: a bad weights file is
  one line before any ingest, not a failed Trainer after seven components."""
  if not config.init_checkpoint and not (config.pretrain and config.pretrain_config().checkpoint):
    return
  # loads TensorFlow
  from vivit_tfx.models import checkpoint_checks  # pylint: disable=g-import-not-at-top
  try:
    checkpoint_checks.check(config.vivit_config(), configs.split_names(config.classes) or None,
                            config.pretrain_config() if config.pretrain else None)
  except ValueError as e:
    raise UserError(_one_line(e)) from None


def _cmd_compile(args) -> int:
  # loads TFX
  from vivit_tfx.kubeflow import runner  # pylint: disable=g-import-not-at-top
  try:
    config, deployment = runner.from_args(args)
    config.validate()
    path = runner.compile_pipeline(config, deployment)
  except ValueError as e:
    raise UserError(str(e)) from None
  print(f'compile: wrote the Kubeflow Pipelines v2 spec {path} (target {deployment.target})\n'
        f'  image {deployment.image}, pipeline root {config.pipeline_root}\n'
        f'  beam args: {config.beam_args}')
  note = kubeflow_options.precision_note(deployment, config.vivit_config().precision)
  if note:
    print(f'  precision: {note}')
  if deployment.target == 'kfp':
    print('  note: no baseline Resolver (open-source KFP does not run Resolver tasks): the '
          'Evaluator blesses on the absolute accuracy threshold only')
  local = _local_paths(config)
  if local:
    print("  note: this machine's paths are written into the spec as they are (pods read them "
          'only where the same path is mounted; pass URIs such as gs://… instead): '
          + ', '.join(f'{flag} {path}' for flag, path in local))
  if '<' in config.beam_args:
    print('  note: fill in the <…> values of the Beam preset with --beam-args '
          "'--project=… --region=…' (later values win)")
  return 0


def _local_paths(config) -> List[tuple]:
  """[(option, absolute local path)] of the data and output paths a compiled spec names."""
  data = ('--clips-dir', config.clips_dir) if config.input_mode == 'tfrecords' else (
      '--videos-dir', config.videos_dir)
  paths = [('--pipeline-root', config.pipeline_root), data, ('--serving-uri', config.serving_dir)]
  return [(flag, configs.absolute(path)) for flag, path in paths if '://' not in path]


def _quiet() -> None:
  """Read-only commands: keep library deprecation chatter off the user's screen."""
  absl_logging.set_verbosity(absl_logging.ERROR)
  logging.getLogger('tensorflow').setLevel(logging.ERROR)


def _metadata_path(args) -> str:
  """--metadata, else <output-root>/metadata.sqlite (as `run --output-root` writes it)."""
  return args.metadata or os.path.join(args.output_root, 'metadata.sqlite')


def _store(args):
  """The store, opened read-only: inspection never writes to it."""
  # loads TFX
  from vivit_tfx.audit import metadata  # pylint: disable=g-import-not-at-top
  try:
    return metadata.open_store(metadata.connection_config(
        sqlite_path=_metadata_path(args), mysql_host=args.mysql_host, mysql_port=args.mysql_port,
        mysql_database=args.mysql_database, mysql_user=args.mysql_user,
        mysql_password=args.mysql_password, grpc_host=args.grpc_host, grpc_port=args.grpc_port,
        read_only=True))
  except metadata.NotAStoreError as e:
    raise UserError(str(e)) from None


def _cmd_lineage(args) -> int:
  # loads TFX
  from vivit_tfx.audit import lineage  # pylint: disable=g-import-not-at-top
  _quiet()
  store = _store(args)
  try:
    if args.compare:
      diff = lineage.compare_runs(store, args.pipeline_name, *args.compare)
      if args.json:
        print_json(diff)
      else:
        for section in lineage.COMPARED:
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
  extras.require('report')  # the graph is drawn with matplotlib: check before claiming files
  folder = outputs.OutputFolder(args.out_dir, args.overwrite)
  try:
    dot, png = folder.claim('lineage.dot', 'lineage.png')
    with open(dot, 'w') as f:
      f.write(lineage.to_dot(graph))
    png = lineage.to_png(graph, png)
    folder.done()
  except (ValueError, OSError) as e:
    raise UserError(str(e)) from None
  if args.json:
    print_json({**graph.to_json(), 'dot': dot, 'png': png})
  else:
    print(lineage.runs_text(store, args.pipeline_name))
    print()
    print(lineage.chain_text(graph))
    print(f'\nlineage graph: {png} (DOT: {dot})')
  return 0


def _model_dir(args, tflite: bool = False) -> str:
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


def _accounted(inputs: List[str], skipped: List[str]) -> int:
  """The exit status of a command that goes on after a bad input: 1 when any was skipped,
  with one line that counts them against every input given."""
  if skipped:
    print(f'skipped {len(skipped)} of {len(inputs)} input(s): ' + ', '.join(skipped),
          file=sys.stderr)
  return 1 if skipped else 0


def _refuse_non_videos(paths: List[str]) -> Tuple[List[str], List[str]]:
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


def _each(videos: List[str], work: Callable[[str, str], dict], skipped: List[str]) -> Iterator:
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
      print(f'{video}: error: {_one_line(e)}', file=sys.stderr)
      continue
    yield video, result


def _cmd_predict(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import predict  # pylint: disable=g-import-not-at-top
  _quiet()
  inputs = list(args.videos)
  videos, skipped = _refuse_non_videos(inputs)
  if not videos:
    _accounted(inputs, skipped)
    raise UserError('no video file among the inputs')
  try:
    model_dir = _model_dir(args, tflite=not args.rest_request)
    if args.rest_request:
      print_json(predict.rest_request(videos[0], model_dir))
      return 0
    if args.timeline:
      return _accounted(inputs, skipped + _timelines(args, videos, model_dir))
    results = predict.predict(videos, model_dir)
  except ValueError as e:
    raise UserError(str(e)) from None
  if args.json:
    print_json({'model': model_dir, 'predictions': [dataclasses.asdict(r) for r in results]})
  else:
    print(f'model: {model_dir}')
    for r in results:
      print(r.to_text())
  return _accounted(inputs, skipped + [r.path for r in results if r.error is not None])


def _timelines(args, videos: List[str], model_dir: str) -> List[str]:
  """`predict --timeline` over each video (going on after a bad one); returns those skipped."""
  # loads TensorFlow
  from vivit_tfx.inference import predict, timeline  # pylint: disable=g-import-not-at-top
  timeline.window_s_for(predict.clip_config_of(model_dir), args.window_s)  # refused: stop here
  failed = []
  for video, result in _each(videos, lambda video, stem: timeline.run(
      video, model_dir, args.out_dir, args.window_s, args.stride_s, args.threshold,
      overwrite=args.overwrite, stem=stem), failed):
    if args.json:
      print_json(result)
      continue
    print(f'{video}: {len(result["windows"])} windows, {len(result["segments"])} '
          f'violent segment(s) ≥ {args.threshold}')
    for seg in result['segments']:
      print(f'  {seg["start_s"]:8.1f} s – {seg["end_s"]:8.1f} s  peak {seg["peak_score"]:.3f}')
    print(f'  timeline: {result["png"]}\n  segments: {result["json"]}')
  return failed


def _cmd_attention(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import explain  # pylint: disable=g-import-not-at-top
  _quiet()
  inputs = list(args.videos)
  videos, skipped = _refuse_non_videos(inputs)
  try:
    model_dir = _model_dir(args)
  except ValueError as e:
    raise UserError(str(e)) from None
  for video, out in _each(videos, lambda video, stem: explain.render(
      video, model_dir, args.out_dir, args.method, args.overwrite, stem=stem), skipped):
    print(f'{video}: token grid {out["grid"]}\n  strip: {out["png"]}\n  gif: {out["gif"]}')
  return _accounted(inputs, skipped)


def _cmd_export(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import tflite_export  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    model_dir = _model_dir(args)
    out_dir = args.out_dir or tflite_export.default_out_dir(model_dir)
    done = tflite_export.export_tflite(
        model_dir, out_dir, list(dict.fromkeys(args.quantize)), args.clips_dir,
        args.calibration_clips, args.overwrite, log=lambda m: print(m, file=sys.stderr),
        int8=args.int8)
  except (ValueError, OSError) as e:
    raise UserError(_one_line(e)) from None
  print(f'model: {model_dir}')
  for e in done:
    print(f'  {e.quantize}: {e.path} ({e.bytes / 2**20:.2f} MiB), clip config {e.clip_config}')
  return 0


def _cmd_report(args) -> int:
  # loads TFX
  from vivit_tfx.audit import metadata, report  # pylint: disable=g-import-not-at-top
  _quiet()
  # a server (Kubeflow's gRPC service, MySQL) is opened here; a sqlite file by the report,
  # whose messages name it
  store = _store(args) if args.grpc_host or args.mysql_host else None
  settings = report.Settings(args.pipeline_name, args.output_root, _metadata_path(args),
                             args.min_test_examples_per_class, args.overwrite)
  try:
    page = report.build(settings, args.run_id or None, args.out_dir or None, store=store)
  except (ValueError, OSError) as e:
    raise UserError(str(e)) from None
  print(f'report: {page}')
  return 0


def _cmd_bench(args) -> int:
  # Each benchmark loads TensorFlow: only the one asked for is imported.
  if args.what in ('serve', 'watch'):
    from vivit_tfx.bench import serve_bench, watch_bench  # pylint: disable=g-import-not-at-top
    return (serve_bench if args.what == 'serve' else watch_bench).main(args.rest)
  if args.what == 'model':
    from vivit_tfx.bench import model_bench  # pylint: disable=g-import-not-at-top
    return model_bench.main(args.rest)
  if args.what == 'baselines':
    from vivit_tfx.bench import baselines_bench  # pylint: disable=g-import-not-at-top
    return baselines_bench.main(args.rest)
  if args.what == 'views':
    from vivit_tfx.bench import views_bench  # pylint: disable=g-import-not-at-top
    return views_bench.main(args.rest)
  if args.what == 'train':
    from vivit_tfx.bench import train_bench  # pylint: disable=g-import-not-at-top
    return train_bench.main(args.rest)
  if args.what == 'export':  # the export's size, or with --split etc. TFLite's accuracy
    from vivit_tfx.bench import export_size, tflite_bench  # pylint: disable=g-import-not-at-top
    return (tflite_bench if tflite_bench.wanted(args.rest) else export_size).main(args.rest)
  if args.what == 'scan':
    from vivit_tfx.bench import scan_bench  # pylint: disable=g-import-not-at-top
    return scan_bench.main(args.rest)
  from vivit_tfx.bench import pipeline_bench  # pylint: disable=g-import-not-at-top
  return pipeline_bench.main(args.rest)


def _cmd_scan(args) -> int:
  # loads TensorFlow and Beam
  from vivit_tfx.scan import scan  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    return scan.main(args, _model_dir(args))
  except (ValueError, OSError, scan.ScanFailed) as e:
    raise UserError(_one_line(e)) from None


def _cmd_checkpoint(args) -> int:
  # loads TensorFlow
  from vivit_tfx.models import hf_export, pixel_preprocessing  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.vit_checkpoint import CheckpointMismatch  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    if args.action == 'inspect':
      print('\n'.join(hf_export.inspect(args.path)))
      return 0
    if not args.output:
      raise UserError('checkpoint export needs --output DIR')
    clip = hf_export.export(args.path, args.output, args.num_frames)
  except (CheckpointMismatch, pixel_preprocessing.PreprocessorConfigError, OSError) as e:
    raise UserError(_one_line(e)) from None
  print(f"exported: {args.output} ({clip.provenance['hf_family']}, T={clip.num_frames}, "
        f"{len(clip.class_names)} labels; signatures serving_default, pixels)")
  return 0


def _cmd_serve(args) -> int:
  # loads TensorFlow and Starlette
  from vivit_tfx.inference import server  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    config = server.ServerConfig(
        model_dir=args.model_dir or os.path.join(args.serving_dir, args.model_name),
        model_name=args.model_name, host=args.host, port=args.port, work_dir=args.work_dir,
        videos_dir=args.videos_dir, max_request_bytes=int(args.max_request_mb * (1 << 20)),
        max_upload_bytes=int(args.max_upload_mb * (1 << 20)), threshold=args.threshold,
        poll_s=args.poll_s, token_file=args.token_file, tls_cert=args.tls_cert,
        tls_key=args.tls_key)
    server.serve(config)
  except (ValueError, OSError) as e:
    raise UserError(str(e)) from None
  return 0


def _cmd_reviews(args) -> int:
  # loads OpenCV and PyAV
  from vivit_tfx.inference import reviews_export  # pylint: disable=g-import-not-at-top
  try:
    summary = reviews_export.export(args.work_dir, args.out_dir, original=args.original,
                                    layout=args.layout, negative_class=args.negative_class,
                                    overwrite=args.overwrite, held_out=args.held_out)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(_one_line(e)) from None
  print(summary.to_text())
  print(f'  train on it: vivit-tfx run --videos-dir {summary.csv_path} --layout csv')
  print(f'  and have the blessing compare on the held-out part: {summary.next_steps()}')
  return 0


def _cmd_watch(args) -> int:
  # loads TensorFlow and OpenCV
  from vivit_tfx.data import video_reader  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import cameras, watch  # pylint: disable=g-import-not-at-top
  _quiet()
  try:
    chosen = cameras.cameras(args.source, args.sources)
    watch.check_cameras(chosen)
    config = watch.WatchConfig(
        source=chosen[0].source, cameras=chosen if chosen[0].name else (),
        model_dir=_model_dir(args, tflite=True), out_dir=args.out_dir,
        stride_s=args.stride_s, average=args.average, ema=args.ema,
        start_threshold=args.start_threshold, stop_threshold=args.stop_threshold,
        min_event_s=args.min_event_s, webhooks=tuple(args.webhook),
        webhook_timeout_s=args.webhook_timeout, max_seconds=args.max_seconds,
        reconnect_s=args.reconnect_s, realtime=args.realtime,
        drift_interval_s=args.drift_interval_s, drift_windows=args.drift_windows,
        drift_threshold=args.drift_threshold)
    if config.stop_threshold > config.start_threshold:
      raise ValueError('--stop-threshold must not exceed --start-threshold')
    watch.watch(config)
  except (ValueError, video_reader.VideoReadError) as e:
    raise UserError(str(e)) from None
  return 0


def _add_serve_watch_parsers(sub) -> None:
  p = sub.add_parser('watch', help='live detection on a camera, stream or file: events as JSON '
                     'lines, snapshots, webhooks')
  p.add_argument('source', nargs='*', help='a video file, a webcam index (0), or an rtsp:// / '
                 'http(s):// stream URL; several: one camera each, scored in one batch '
                 '(name=SOURCE names one; unnamed: cam1, cam2, …)')
  p.add_argument('--sources', default='', metavar='FILE',
                 help='more cameras, one per line: name=SOURCE (or SOURCE); # comments')
  p.add_argument('--model-dir', default='', help='a SavedModel, a folder of numbered '
                 'versions, or a .tflite model of `vivit-tfx export` (default: newest pushed)')
  _add_serving_arguments(p)
  p.add_argument('--out-dir', default='output/watch', help='event snapshots go to a new '
                 'timestamped folder in here')
  p.add_argument('--stride-s', type=_finite_float, default=1.0,
                 help='score a window every this often')
  p.add_argument('--average', type=int, default=3, help='smooth: mean of the last k windows')
  p.add_argument('--ema', type=_finite_float, default=0.0,
                 help='smooth with an exponential moving average of this weight instead')
  p.add_argument('--start-threshold', type=_finite_float, default=0.6,
                 help='an event starts when the smoothed P(violence) reaches this')
  p.add_argument('--stop-threshold', type=_finite_float, default=0.4,
                 help='… and ends when it falls below this (≤ --start-threshold)')
  p.add_argument('--min-event-s', type=_finite_float, default=1.0,
                 help='an event is reported once it has lasted this many seconds')
  p.add_argument('--webhook', action='append', default=[], metavar='URL',
                 help='POST each event as JSON here (repeatable)')
  p.add_argument('--webhook-timeout', type=_finite_float, default=5.0, help='seconds per attempt')
  p.add_argument('--max-seconds', type=_finite_float, default=0.0,
                 help='stop after this long (0: never)')
  p.add_argument('--reconnect-s', type=_finite_float, default=30.0,
                 help='give up on a live source after this long without frames')
  p.add_argument('--realtime', action='store_true',
                 help='read a file at its frame rate, like a camera (default: as fast as the '
                 'model goes, nothing dropped)')
  p.add_argument('--drift-interval-s', type=_finite_float, default=60.0,
                 help="check drift against the training split's statistics the model carries "
                 'every this many seconds of stream, at most one line per drifted feature '
                 '(0: off)')
  p.add_argument('--drift-windows', type=int, default=60,
                 help="a check compares a camera's last this many scored windows")
  p.add_argument('--drift-threshold', type=_finite_float, default=0.3,
                 help='a feature has drifted when its Jensen-Shannon divergence from the '
                 'training split is above this')
  p.set_defaults(func=_cmd_watch)

  p = sub.add_parser('serve', help="local server: TF Serving's REST API for the pushed model "
                     'and a review page')
  p.add_argument('--model-dir', default='',
                 help='a SavedModel, or a folder of numbered versions (default: '
                 '<serving-dir>/<model-name>, newest version)')
  p.add_argument('--serving-dir', default='output/serving', help=_SERVING_DIR_HELP)
  p.add_argument('--model-name', default='vivit_violence',
                 help='the pushed model to serve, and the name in /v1/models/<name>')
  p.add_argument('--host', default='127.0.0.1', help='0.0.0.0 to listen on every interface')
  p.add_argument('--port', type=int, default=8501, help="TF Serving's REST port by default")
  p.add_argument('--work-dir', default='output/serve',
                 help='the only folder the server writes to (uploads, review results)')
  p.add_argument('--videos-dir', default='', help='videos the review page offers to pick')
  p.add_argument('--max-request-mb', type=_finite_float, default=64, help='REST request body limit')
  p.add_argument('--max-upload-mb', type=_finite_float, default=512, help='review upload limit')
  p.add_argument('--threshold', type=_finite_float, default=0.5,
                 help='review page: flag timeline windows at or above this P(violence)')
  p.add_argument('--poll-s', type=_finite_float, default=30.0,
                 help='serve a newly pushed version found within this many seconds (0: never)')
  p.add_argument('--token-file', default='',
                 help='name:token lines, one per reviewer (also the VIVIT_TFX_SERVE_TOKENS '
                 'variable); needed beyond loopback; see docs/live-and-serving.md')
  p.add_argument('--tls-cert', default='',
                 help='serve HTTPS with this PEM certificate (chain); with --tls-key')
  p.add_argument('--tls-key', default='', help="the PEM private key of --tls-cert's certificate")
  p.set_defaults(func=_cmd_serve)

  p = sub.add_parser('reviews', help="the review page's verdicts (see `reviews export`)")
  reviews = p.add_subparsers(dest='reviews_command', required=True, metavar='{export}',
                             help='export: the kept verdicts as a dataset ingest reads')
  p = reviews.add_parser('export', help='verdicts → a csv-layout dataset for ingest and run '
                         '(false alarms as hard negatives)')
  p.add_argument('--work-dir', default='output/serve',
                 help="serve's work folder (its verdicts.jsonl), or the verdict file itself")
  p.add_argument('--out-dir', default='data/reviewed',
                 help='reviews.csv and the reviewed stretches cut as videos go here')
  p.add_argument('--original', default='',
                 help='the original labelled videos (any layout): listed in the same CSV, so '
                 '`run --videos-dir <out-dir>/reviews.csv --layout csv` trains on both')
  p.add_argument('--layout', default='auto', choices=layouts.LAYOUTS,
                 help='layout of --original (as ingest --layout)')
  p.add_argument('--negative-class', default='',
                 help="class of a false alarm (default: a binary model's other class)")
  p.add_argument('--held-out', type=float, default=0.3,
                 help='share of the reviewed source videos (per class) put in the test split, '
                 'never trained on, and listed in held-out.csv for `run --reviewed-clips`')
  _add_overwrite_argument(p)
  p.set_defaults(func=_cmd_reviews)


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
  """How the tools that read a run (lineage, report) name it: its ML Metadata store and
  pipeline."""
  p.add_argument('--output-root', default=configs.PipelineConfig.output_root,
                 help='the run\'s --output-root (its store: <output-root>/metadata.sqlite)')
  p.add_argument('--metadata', default='', help="a sqlite store of local runs ('': "
                 '<output-root>/metadata.sqlite)')
  p.add_argument('--mysql-host', default='', help='ML Metadata in MySQL: the server '
                 "(instead of --metadata; '': not MySQL)")
  p.add_argument('--mysql-port', type=int, default=3306, help="the MySQL server's port")
  p.add_argument('--mysql-database', default='metadb', help='the ML Metadata database')
  p.add_argument('--mysql-user', default='root', help='MySQL user (read-only access suffices)')
  p.add_argument('--mysql-password', default='', help="that user's password")
  p.add_argument('--grpc-host', default='',
                 help='ML Metadata gRPC service (Kubeflow: metadata-grpc-service.kubeflow)')
  p.add_argument('--grpc-port', type=int, default=8080, help="the gRPC service's port")
  p.add_argument('--pipeline-name', default=configs.PIPELINE_NAME,
                 help='the pipeline whose runs to read (as `run --pipeline-name`)')


def _add_overwrite_argument(p: argparse.ArgumentParser) -> None:
  p.add_argument('--overwrite', action='store_true',
                 help='replace files of the same names in --out-dir that vivit-tfx did not '
                 'write (without it they are left as they are and the command stops)')


_SERVING_DIR_HELP = "the Pusher's destination: <serving-dir>/<model-name>/<version>/"


def _add_serving_arguments(p: argparse.ArgumentParser) -> None:
  """Where the newest pushed model is found when --model-dir is not given."""
  p.add_argument('--serving-dir', default='output/serving', help=_SERVING_DIR_HELP)
  p.add_argument('--model-name', default='vivit_violence',
                 help='the pushed model to use (as `run --model-name`)')


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
  """Videos to look at and which pushed model to use (predict, attention)."""
  p.add_argument('videos', nargs='+', help='video files (any container ingest reads)')
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  _add_serving_arguments(p)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='vivit-tfx',
      description='Violence detection in video with ViViT on TFX 1.16: data, pipeline, '
      'Kubeflow, lineage.')
  sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

  p = sub.add_parser('make-synthetic', help='write the synthetic labelled video dataset')
  p.add_argument('--output', default='data/synthetic_videos', help='RLVS-layout folder to write')
  p.add_argument('--num-clips', type=int, default=200, help='videos to write, half of each '
                 'class (> 0)')
  p.add_argument('--seed', type=int, default=0, help='random seed: the same seed writes the '
                 'same videos')
  p.add_argument('--workers', type=int, default=0, help='processes (0: one per core)')
  p.add_argument('--difficulty', default='default', choices=['default', 'hard'],
                 help='hard: 2-30 s, camera shake, clutter, light changes, compression noise, '
                 'fast non-violent motion')
  p.add_argument('--with-bad-inputs', action='store_true',
                 help='also write corrupt and non-video files (to see how ingest copes)')
  p.add_argument('--long', default='', metavar='PATH.mp4',
                 help='instead: one long video of violent/non-violent segments')
  p.add_argument('--segments', type=_labels, default='0101001',
                 help='labels of the segments, e.g. 0110 (1 = violent)')
  p.add_argument('--segment-s', type=_finite_float, default=4.0,
                 help='--long: seconds per segment (> 0)')
  p.set_defaults(func=_cmd_make_synthetic)

  p = sub.add_parser('ingest', help='video folder → clip TFRecords per split + manifest')
  p.add_argument('--input', default='data/synthetic_videos',
                 help='folder of videos (see --layout), or a CSV file for --layout csv '
                 "(default: 'data/synthetic_videos')")
  p.add_argument('--output', default='data/clips',
                 help="folder for split TFRecords (default: 'data/clips')")
  clip = clip_config.ClipConfig()  # the defaults: the default pipeline's clips
  configs.add_arguments(p, only=configs.INGEST_OPTIONS, defaults=dict(
      num_frames=clip.num_frames, frame_size=clip.frame_size, sample_fps=clip.sample_fps),
      title='clip and dataset options (the same as `run`\'s)')
  p.add_argument('--jpeg-quality', type=int, default=clip.jpeg_quality,
                 help=f'JPEG quality of the stored frames (1-100) (default: {clip.jpeg_quality})')
  split = dict(train=0.7, eval=0.15, test=0.15, seed=42)  # ingest.SplitConfig() (loads OpenCV)
  p.add_argument('--train', type=float, default=split['train'], help="share of each class's "
                 'videos the Trainer trains on; --train, --eval and --test each within (0, 1), '
                 f"summing to 1 (default: {split['train']})")
  p.add_argument('--eval', type=float, default=split['eval'], help="share of each class's "
                 f"videos the Trainer validates on, within (0, 1) (default: {split['eval']})")
  p.add_argument('--test', type=float, default=split['test'], help="share of each class's "
                 f"videos the Evaluator blesses on, within (0, 1) (default: {split['test']})")
  p.add_argument('--seed', type=int, default=split['seed'],
                 help=f"split seed: the same seed, the same splits (default: {split['seed']})")
  p.add_argument('--clips-per-shard', type=int, default=256,
                 help='clips per TFRecord file (> 0) (default: 256)')
  p.add_argument('--workers', type=int, default=0,
                 help='processes (0: one per core) (default: 0)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace an earlier ingest output made from other input or settings '
                 '(a folder ingest did not make, or files in it that ingest did not write, are '
                 'never replaced)')
  p.set_defaults(func=_cmd_ingest)

  p = sub.add_parser('run', help='main job: data if absent, then the whole TFX pipeline on '
                     'LocalDagRunner, then a summary')
  configs.add_arguments(p)
  p.add_argument('--verbose', action='store_true',
                 help='also show library warnings (always in <output-root>/logs/run-*.log)')
  p.set_defaults(func=_cmd_run)

  p = sub.add_parser('compile', help='compile the pipeline to a Kubeflow Pipelines v2 spec')
  kubeflow_options.add_arguments(p)
  configs.add_arguments(p, exclude=('pipeline_root_uri', 'output_root', 'overwrite', 'if_busy'))
  p.set_defaults(func=_cmd_compile)

  p = sub.add_parser('lineage', help='trace the pushed model back to its data in ML Metadata')
  _add_store_arguments(p)
  p.add_argument('--artifact-id', type=int, default=None,
                 help='PushedModel artifact id (default: the newest pushed)')
  p.add_argument('--runs', action='store_true', help='only list runs and their executions')
  p.add_argument('--compare', nargs=2, metavar=('RUN_A', 'RUN_B'),
                 help='what changed between two runs: inputs, hyperparameters, metrics')
  p.add_argument('--out-dir', default='output/lineage', help='where lineage.dot/.png go')
  _add_overwrite_argument(p)
  p.add_argument('--json', action='store_true', help='print JSON instead of text')
  p.set_defaults(func=_cmd_lineage)

  p = sub.add_parser('predict', help='classify video files with the pushed model (goes on '
                     'after a bad file; exit 1 if any input was skipped)')
  _add_model_arguments(p)
  p.add_argument('--json', action='store_true', help='print JSON instead of text')
  p.add_argument('--rest-request', action='store_true',
                 help="print the TF Serving REST :predict body for the first video")
  p.add_argument('--timeline', action='store_true',
                 help='score sliding windows over each (long) video: PNG + JSON segments')
  p.add_argument('--window-s', type=_finite_float, default=None,
                 help='window length; a model with a sampling rate fixes it (T / fps: one '
                 'clip as evaluated) and refuses another value (default: that, else 2)')
  p.add_argument('--stride-s', type=_finite_float, default=1.0,
                 help='score a window every this often')
  p.add_argument('--threshold', type=_finite_float, default=0.5,
                 help='--timeline: a violent segment is windows at or above this P(violence)')
  p.add_argument('--out-dir', default='output/timeline',
                 help='--timeline: where the PNG and JSON of each video go')
  _add_overwrite_argument(p)
  p.set_defaults(func=_cmd_predict)

  p = sub.add_parser('attention', help="draw where the pushed model looks in a video's clip")
  _add_model_arguments(p)
  p.add_argument('--method', default='auto', choices=['auto', 'rollout', 'gradient'],
                 help='auto: attention rollout for Model 1, gradient x input otherwise')
  p.add_argument('--out-dir', default='output/attention',
                 help='where the strip PNG and GIF of each video go')
  _add_overwrite_argument(p)
  p.set_defaults(func=_cmd_attention)

  p = sub.add_parser('export', help='the pushed model as a TFLite model (float32, float16 or '
                     'int8) with its clip config, for edge devices; predict takes it')
  p.add_argument('--format', default='tflite', choices=['tflite'], help='the runtime')
  p.add_argument('--quantize', nargs='+', default=['none'], choices=['none', 'float16', 'int8'],
                 help='none (float32), float16 weights, or int8 (weights and activations, '
                 'calibrated on train clips); several: one file each')
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  _add_serving_arguments(p)
  p.add_argument('--clips-dir', default='data/clips',
                 help='int8: the ingested clips whose train split calibrates it')
  p.add_argument('--calibration-clips', type=_positive_int, default=64,
                 help='int8: clips of the train split to calibrate on')
  p.add_argument('--int8', default='norm-float', choices=['norm-float', 'full'],
                 help='int8: norm-float keeps the normalisation layers (GroupNorm, LayerNorm) '
                 'in float, which keeps the accuracy; full quantises every op with an int8 '
                 'kernel')
  p.add_argument('--out-dir', default='', help="a folder outside the model ('': "
                 'output/tflite/<model name>/<version>)')
  _add_overwrite_argument(p)
  p.set_defaults(func=_cmd_export)

  p = sub.add_parser('report', help='HTML report of a pipeline run (from ML Metadata)')
  p.add_argument('--run-id', default='', help="the run to report on ('': the latest)")
  p.add_argument('--out-dir', default='', help="where index.html and its figures go ('': "
                 '<output-root>/reports/<run id>)')
  _add_store_arguments(p)
  p.add_argument('--min-test-examples-per-class', type=_non_negative_int,
                 default=configs.PipelineConfig.min_test_examples_per_class,
                 help="the blessing's minimum test examples of each class the report checks "
                 '(as `run --min-test-examples-per-class`)')
  _add_overwrite_argument(p)
  p.set_defaults(func=_cmd_report)

  _add_serve_watch_parsers(sub)

  p = sub.add_parser('scan', help='score an archive of videos on Apache Beam (resumable): '
                     'timelines, one CSV, drift against the training split')
  scan_options.add_arguments(p, number=_finite_float)
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  _add_serving_arguments(p)
  p.set_defaults(func=_cmd_scan)

  p = sub.add_parser('checkpoint', help='a Hugging Face model directory: inspect it, or export '
                     'it as a SavedModel with its own head and preprocessing')
  p.add_argument('action', choices=['inspect', 'export'], metavar='{inspect,export}',
                 help='inspect: print what the directory holds; export: write a SavedModel')
  p.add_argument('path', metavar='MODEL_DIR', help='model directory (config.json, '
                 'model.safetensors, preprocessor_config.json), local or any tf.io.gfile URI')
  p.add_argument('--output', help='export: SavedModel directory to create')
  p.add_argument('--num-frames', type=_positive_int, default=0,
                 help="export: clip length T (default: the checkpoint's; image ViT: 2)")
  p.set_defaults(func=_cmd_checkpoint)

  p = sub.add_parser('bench', help='benchmarks that print their figures (model, pipeline, '
                     'train, export, views, baselines, serve, watch, scan)')
  benchmarks = ['model', 'pipeline', 'train', 'export', 'views', 'baselines', 'serve', 'watch',
                'scan']
  p.add_argument('what', choices=benchmarks, metavar='{' + ','.join(benchmarks) + '}',
                 help='the benchmark to run')
  p.add_argument('rest', nargs=argparse.REMAINDER, metavar='...',
                 help="options of the benchmark (vivit-tfx bench BENCHMARK --help)"
                 ).required = False  # a remainder may be empty: never named as required
  p.set_defaults(func=_cmd_bench)
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


def _one_line(error: Exception, limit: int = 600) -> str:
  """The error's first line; one longer than `limit` keeps its start and its end (where a
  message names its file) around an ellipsis."""
  text = str(error).strip().splitlines()
  if not text:
    return type(error).__name__
  line, half = text[0], limit // 2
  return line if len(line) <= limit else f'{line[:half]} … {line[-half:]}'


def print_json(obj) -> None:
  print(json.dumps(obj, indent=1, default=str, ensure_ascii=False))


if __name__ == '__main__':
  sys.exit(main())
