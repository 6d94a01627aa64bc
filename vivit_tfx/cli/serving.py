"""`vivit-tfx serve`, `reviews` and `watch`: the served model, its reviewers, live cameras."""
from __future__ import annotations

import os

from vivit_tfx.cli.common import (UserError, SERVING_DIR_HELP, add_overwrite_argument,
                                  add_serving_arguments, finite_float, chosen_model, one_line, quiet)
from vivit_tfx.data import layouts


def _cmd_serve(args) -> int:
  # loads TensorFlow and Starlette
  from vivit_tfx.inference import server  # pylint: disable=g-import-not-at-top
  quiet()
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
    raise UserError(one_line(e)) from None
  print(summary.to_text())
  print(f'  train on it: vivit-tfx run --videos-dir {summary.csv_path} --layout csv')
  print(f'  and have the blessing compare on the held-out part: {summary.next_steps()}')
  return 0


def _cmd_watch(args) -> int:
  # loads TensorFlow and OpenCV
  from vivit_tfx.data import video_reader  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import cameras, watch  # pylint: disable=g-import-not-at-top
  quiet()
  try:
    chosen = cameras.cameras(args.source, args.sources)
    watch.check_cameras(chosen)
    config = watch.WatchConfig(
        source=chosen[0].source, cameras=chosen if chosen[0].name else (),
        model_dir=chosen_model(args, tflite=True), out_dir=args.out_dir,
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


def add_parsers(sub) -> None:
  p = sub.add_parser('watch', help='live detection on a camera, stream or file: events as JSON '
                     'lines, snapshots, webhooks')
  p.add_argument('source', nargs='*', help='a video file, a webcam index (0), or an rtsp:// / '
                 'http(s):// stream URL; several: one camera each, scored in one batch '
                 '(name=SOURCE names one; unnamed: cam1, cam2, …)')
  p.add_argument('--sources', default='', metavar='FILE',
                 help='more cameras, one per line: name=SOURCE (or SOURCE); # comments')
  p.add_argument('--model-dir', default='', help='a SavedModel, a folder of numbered '
                 'versions, or a .tflite model of `vivit-tfx export` (default: newest pushed)')
  add_serving_arguments(p)
  p.add_argument('--out-dir', default='output/watch', help='event snapshots go to a new '
                 'timestamped folder in here')
  p.add_argument('--stride-s', type=finite_float, default=1.0,
                 help='score a window every this often')
  p.add_argument('--average', type=int, default=3, help='smooth: mean of the last k windows')
  p.add_argument('--ema', type=finite_float, default=0.0,
                 help='smooth with an exponential moving average of this weight instead')
  p.add_argument('--start-threshold', type=finite_float, default=0.6,
                 help='an event starts when the smoothed P(violence) reaches this')
  p.add_argument('--stop-threshold', type=finite_float, default=0.4,
                 help='… and ends when it falls below this (≤ --start-threshold)')
  p.add_argument('--min-event-s', type=finite_float, default=1.0,
                 help='an event is reported once it has lasted this many seconds')
  p.add_argument('--webhook', action='append', default=[], metavar='URL',
                 help='POST each event as JSON here (repeatable)')
  p.add_argument('--webhook-timeout', type=finite_float, default=5.0, help='seconds per attempt')
  p.add_argument('--max-seconds', type=finite_float, default=0.0,
                 help='stop after this long (0: never)')
  p.add_argument('--reconnect-s', type=finite_float, default=30.0,
                 help='give up on a live source after this long without frames')
  p.add_argument('--realtime', action='store_true',
                 help='read a file at its frame rate, like a camera (default: as fast as the '
                 'model goes, nothing dropped)')
  p.add_argument('--drift-interval-s', type=finite_float, default=60.0,
                 help="check drift against the training split's statistics the model carries "
                 'every this many seconds of stream, at most one line per drifted feature '
                 '(0: off)')
  p.add_argument('--drift-windows', type=int, default=60,
                 help="a check compares a camera's last this many scored windows")
  p.add_argument('--drift-threshold', type=finite_float, default=0.3,
                 help='a feature has drifted when its Jensen-Shannon divergence from the '
                 'training split is above this')
  p.set_defaults(func=_cmd_watch)

  p = sub.add_parser('serve', help="local server: TF Serving's REST API for the pushed model "
                     'and a review page')
  p.add_argument('--model-dir', default='',
                 help='a SavedModel, or a folder of numbered versions (default: '
                 '<serving-dir>/<model-name>, newest version)')
  p.add_argument('--serving-dir', default='output/serving', help=SERVING_DIR_HELP)
  p.add_argument('--model-name', default='vivit_violence',
                 help='the pushed model to serve, and the name in /v1/models/<name>')
  p.add_argument('--host', default='127.0.0.1', help='0.0.0.0 to listen on every interface')
  p.add_argument('--port', type=int, default=8501, help="TF Serving's REST port by default")
  p.add_argument('--work-dir', default='output/serve',
                 help='the only folder the server writes to (uploads, review results)')
  p.add_argument('--videos-dir', default='', help='videos the review page offers to pick')
  p.add_argument('--max-request-mb', type=finite_float, default=64, help='REST request body limit')
  p.add_argument('--max-upload-mb', type=finite_float, default=512, help='review upload limit')
  p.add_argument('--threshold', type=finite_float, default=0.5,
                 help='review page: flag timeline windows at or above this P(violence)')
  p.add_argument('--poll-s', type=finite_float, default=30.0,
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
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_reviews)
