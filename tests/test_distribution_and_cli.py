"""Strategy choice for the Trainer, and the command's smaller entry points."""
import argparse
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.trainer import distribution
from vivit_tfx import cli


def test_auto_strategy_choice(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  assert distribution.choose('auto') == 'default'
  assert distribution.choose('auto', num_gpus=2) == 'mirrored'
  assert distribution.choose('auto', tpu_address='grpc://10.0.0.2:8470') == 'tpu'
  monkeypatch.setenv('TF_CONFIG', json.dumps({
      'cluster': {'worker': ['host1:2222', 'host2:2222']}, 'task': {'type': 'worker',
                                                                    'index': 0}}))
  assert distribution.choose('auto', num_gpus=2) == 'multi_worker'
  assert distribution.choose('mirrored') == 'mirrored'
  with pytest.raises(ValueError, match='not one of'):
    distribution.choose('horovod')


def test_cpu_strategies_build(monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  assert distribution.strategy_for('auto').num_replicas_in_sync == 1
  assert isinstance(distribution.strategy_for('mirrored'), tf.distribute.MirroredStrategy)


def test_two_mirrored_strategies_in_one_process_all_reduce_apart():
  """A local run's PretrainTrainer and Trainer each make a MirroredStrategy over the same
  devices in one process: the second one's all-reduce of other shapes must not reuse the
  first one's collective keys ("Shape mismatch in the collective instance"), nor those of a
  strategy made directly after it."""
  for size, make in ((3, lambda: distribution.strategy_for('mirrored')),
                     (5, lambda: distribution.strategy_for('mirrored')),
                     (7, tf.distribute.MirroredStrategy)):
    strategy = make()
    assert strategy.num_replicas_in_sync == 2  # the session's two logical CPUs

    @tf.function
    def mean_of_ones(strategy=strategy, size=size):
      return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, tf.ones([size])))

    total = strategy.experimental_local_results(mean_of_ones())[0]
    np.testing.assert_array_equal(total.numpy(), np.full([size], 2.0))


def test_bench_model_command_prints_the_table(capsys):
  assert cli.main(['bench', 'model', '--presets', 'vivit-b-16x2', '--no-latency']) == 0
  out = capsys.readouterr().out
  assert '| vivit-b-16x2 | spatiotemporal | 88.65 | 88.9 | 451.524 | 455.2 | – |' in out


def test_help_lists_every_command(capsys):
  with pytest.raises(SystemExit):
    cli.main(['--help'])
  out = capsys.readouterr().out
  for command in ('make-synthetic', 'ingest', 'run', 'compile', 'lineage', 'predict',
                  'attention', 'report', 'bench', 'checkpoint'):
    assert command in out


def test_every_option_of_every_command_says_what_it_does():
  """Each option's help text says what it does: more than its default."""
  parser = cli.build_parser()
  commands = next(a for a in parser._actions  # pylint: disable=protected-access
                  if isinstance(a, argparse._SubParsersAction)).choices  # pylint: disable=protected-access
  unexplained = []
  for name, command in commands.items():
    for action in command._actions:  # pylint: disable=protected-access
      if isinstance(action, argparse._HelpAction):  # pylint: disable=protected-access
        continue
      text = re.sub(r"\(?default: [^)]*\)?", '', action.help or '')
      if not text.strip(' .;,'):
        unexplained.append(f'{name} {"/".join(action.option_strings) or action.dest}')
  assert len(commands) >= 12 and not unexplained, unexplained


@pytest.mark.parametrize('what', ['model', 'export', 'pipeline', 'train', 'views', 'baselines',
                                  'serve', 'watch', 'scan'])
def test_each_benchmarks_help_names_its_own_command(what, capsys):
  with pytest.raises(SystemExit):
    cli.main(['bench', what, '--help'])
  assert capsys.readouterr().out.startswith(f'usage: vivit-tfx bench {what} ')


@pytest.mark.parametrize('argv, missing', [
    (['bench'], '{model,pipeline,train,export,views,baselines,serve,watch,scan}'),
    (['checkpoint'], '{inspect,export}, MODEL_DIR')])
def test_a_bare_command_names_what_it_needs(argv, missing, capsys):
  with pytest.raises(SystemExit):
    cli.main(argv)
  assert capsys.readouterr().err.splitlines()[-1].endswith(
      f'error: the following arguments are required: {missing}')


def _commands() -> dict:
  parser = cli.build_parser()
  return next(a for a in parser._actions  # pylint: disable=protected-access
              if isinstance(a, argparse._SubParsersAction)).choices  # pylint: disable=protected-access


def test_ingest_help_states_every_default():
  from vivit_tfx.data import ingest  # pylint: disable=g-import-not-at-top
  ingest_parser = _commands()['ingest']
  silent = [a.dest for a in ingest_parser._actions  # pylint: disable=protected-access
            if a.option_strings and a.nargs != 0 and 'default: ' not in (a.help or '')]
  assert not silent
  defaults = ingest_parser.parse_args([])
  split = ingest.SplitConfig()
  assert (defaults.train, defaults.eval, defaults.test, defaults.seed) == (
      split.train, split.eval, split.test, split.seed)


def _readme_command_rows() -> list:
  with open(os.path.join(os.path.dirname(__file__), '..', 'README.md'), encoding='utf-8') as f:
    text = f.read()
  table = text.split('## The commands', 1)[1].split('\n\n|', 1)[1].split('\n\n', 1)[0]
  return [line.split(' | ')[0].lstrip('| ') for line in ('|' + table).splitlines()[2:]]


def _help_of(argv, capsys) -> str:
  """What `vivit-tfx ARGV` prints (a --help exits, or returns after printing several)."""
  try:
    cli.main(argv)
  except SystemExit:
    pass
  return capsys.readouterr().out


def test_readme_commands_table_matches_the_options_and_defaults(capsys):
  """Each row of the README's commands table names real options of its command, with their
  defaults where it shows a number, and no row repeats another's command."""
  commands, rows, problems = _commands(), _readme_command_rows(), []
  assert len(rows) >= 15 and len(set(rows)) == len(rows), rows
  for row in rows:
    words = row.strip('`').split()
    name = words[0]
    parser = commands[name]
    nested = [a for a in parser._actions  # pylint: disable=protected-access
              if isinstance(a, argparse._SubParsersAction)]  # pylint: disable=protected-access
    if nested and len(words) > 1 and words[1] in nested[0].choices:  # `reviews export`
      parser = nested[0].choices[words[1]]
    actions = parser._actions  # pylint: disable=protected-access
    options = {s: a for a in actions for s in a.option_strings}
    for flag, value in re.findall(r'(--[a-z][a-z0-9-]*)(?: ([0-9][0-9.x]*)\b)?', row):
      if name == 'bench' and len(words) > 1 and flag not in options:
        # `bench <what>`'s options belong to its module's parser: its --help lists them.
        help_text = _help_of(['bench', words[1], f'{flag}=x', '--help'], capsys)
        if flag in help_text:
          continue
      if flag not in options:
        problems.append(f'{name} {flag}: no such option')
      elif value:
        default = options[flag].default
        shown = 'x'.join(map(str, default)) if isinstance(default, tuple) else default
        if str(shown) != value and not (isinstance(shown, (int, float)) and
                                        float(shown) == float(value)):
          problems.append(f'{name} {flag} {value}: the default is {shown}')
  actions = commands['bench']._actions  # pylint: disable=protected-access
  bench = next(a for a in actions if a.dest == 'what')
  assert any(r == '`bench ' + '\\|'.join(bench.choices) + '`' for r in rows), rows
  assert not problems, problems
