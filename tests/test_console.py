"""The quiet console: library chatter to the run's log file, stages and errors on the console."""
import logging
import os
import sys
import warnings

import pytest

from vivit_tfx import console


def _chatter():
  print('[run] stage one')  # the user's stages (stdout)
  sys.stderr.write('progress 50%\n')  # tqdm writes to sys.stderr
  logging.getLogger('absl').warning('ArtifactQuery.property_predicate is not supported.')
  logging.getLogger('tensorflow').warning('tf_record_iterator is deprecated')
  logging.getLogger('apache_beam.io').warning('Could not find python-snappy')
  warnings.warn('invalid value encountered in divide', RuntimeWarning)
  os.write(2, b'W0000 op_level_cost_estimator.cc:699] Error in PredictCost()\n')  # C++ code
  logging.getLogger('tfx.orchestration').error('Trainer failed: out of memory')


@pytest.fixture(autouse=True)
def library_loggers_at_warning():
  """Other tests' read-only commands raise these loggers to ERROR; `run` leaves them be."""
  loggers = [logging.getLogger(n) for n in ('absl', 'tensorflow', 'apache_beam')]
  levels = [l.level for l in loggers]
  for l in loggers:
    l.setLevel(logging.WARNING)
  yield
  for l, level in zip(loggers, levels):
    l.setLevel(level)


def test_library_warnings_go_to_the_log_and_errors_stay_visible(tmp_path, capfd):
  tf_logger = logging.getLogger('tensorflow')
  own = logging.StreamHandler(sys.stderr)  # TensorFlow's own console handler
  tf_logger.addHandler(own)
  try:
    with console.quiet(str(tmp_path / 'logs')) as path:
      _chatter()
  finally:
    tf_logger.removeHandler(own)
  out, err = capfd.readouterr()
  assert '[run] stage one' in out and 'progress 50%' in err
  assert 'Trainer failed: out of memory' in err  # real errors reach the console
  for noise in ('property_predicate', 'tf_record_iterator', 'snappy', 'divide', 'PredictCost'):
    assert noise not in out + err, (noise, out, err)
  log = open(path).read()
  assert os.path.dirname(path) == str(tmp_path / 'logs')
  for line in ('property_predicate', 'tf_record_iterator', 'snappy', 'divide', 'PredictCost',
               'Trainer failed'):
    assert line in log, (line, log)
  # Afterwards the console is as before: fd 2 and sys.stderr reach it again.
  os.write(2, b'after\n')
  logging.getLogger('absl').warning('visible again')
  assert 'after' in capfd.readouterr().err and 'after' not in open(path).read()


def test_verbose_shows_everything_and_still_logs(tmp_path, capfd):
  with console.quiet(str(tmp_path), verbose=True) as path:
    _chatter()
  _, err = capfd.readouterr()
  assert 'property_predicate' in err and 'PredictCost' in err
  assert 'property_predicate' in open(path).read()
