"""Strategy choice for the Trainer, and the command's smaller entry points."""
import argparse
import json
import re

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models import distribution
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
