"""`vivit-tfx lineage`, `report` and `model-card`: what ML Metadata recorded of a run."""
from __future__ import annotations

import argparse
import os

from vivit_tfx import extras, outputs
from vivit_tfx.cli.common import (UserError, add_overwrite_argument, non_negative_int,
                                  print_json, quiet)
from vivit_tfx.pipeline import configs


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
  quiet()
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


def _cmd_report(args) -> int:
  # loads TFX
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  quiet()
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


def _cmd_model_card(args) -> int:
  # loads TFX
  from vivit_tfx.audit import metadata, model_card  # pylint: disable=g-import-not-at-top
  quiet()
  store = _store(args)
  try:
    runs = ([metadata.find_run(store, args.pipeline_name, args.run_id)] if args.run_id else
            metadata.runs(store, args.pipeline_name)[::-1])  # the newest that pushed a model
    path = next(filter(None, (model_card.write(store, run, args.overwrite, args.out_dir)
                              for run in runs)), None)
  except (ValueError, OSError) as e:
    raise UserError(str(e)) from None
  if path is None:
    raise UserError((f'run {args.run_id} pushed no model' if args.run_id else
                     f'no run of {args.pipeline_name} pushed a model') +
                    ' (with an evaluation): a model card describes a pushed model')
  print(f'model card: {path} (and {path[:-len(".md")]}.html)')
  return 0


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
  """How the tools that read a run (lineage, report, model-card) name it: its ML Metadata store and
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


def add_parsers(sub) -> None:
  p = sub.add_parser('lineage', help='trace the pushed model back to its data in ML Metadata')
  _add_store_arguments(p)
  p.add_argument('--artifact-id', type=int, default=None,
                 help='PushedModel artifact id (default: the newest pushed)')
  p.add_argument('--runs', action='store_true', help='only list runs and their executions')
  p.add_argument('--compare', nargs=2, metavar=('RUN_A', 'RUN_B'),
                 help='what changed between two runs: inputs, hyperparameters, metrics')
  p.add_argument('--out-dir', default='output/lineage', help='where lineage.dot/.png go')
  add_overwrite_argument(p)
  p.add_argument('--json', action='store_true', help='print JSON instead of text')
  p.set_defaults(func=_cmd_lineage)

  p = sub.add_parser('report', help='HTML report of a pipeline run (from ML Metadata)')
  p.add_argument('--run-id', default='', help="the run to report on ('': the latest)")
  p.add_argument('--out-dir', default='', help="where index.html and its figures go ('': "
                 '<output-root>/reports/<run id>)')
  _add_store_arguments(p)
  p.add_argument('--min-test-examples-per-class', type=non_negative_int,
                 default=configs.PipelineConfig.min_test_examples_per_class,
                 help="the blessing's minimum test examples of each class the report checks "
                 '(as `run --min-test-examples-per-class`)')
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_report)

  p = sub.add_parser('model-card', help="a run's model card (Markdown and HTML), written "
                     'again from ML Metadata: a past run, or a Kubeflow run (`run` writes one '
                     'beside each local pushed model)')
  p.add_argument('--run-id', default='', help="the run that pushed the model ('': the "
                 'latest run that pushed one)')
  p.add_argument('--out-dir', default='', help="a local folder for the card ('': beside the "
                 'pushed model, when that is local)')
  _add_store_arguments(p)
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_model_card)
