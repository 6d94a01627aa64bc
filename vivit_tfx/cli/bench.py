"""`vivit-tfx bench`: benchmarks that print their figures."""
from __future__ import annotations

import argparse


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


def add_parsers(sub) -> None:
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
