"""Strategy choice for the Trainer, and the command's smaller entry points."""
import json

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
