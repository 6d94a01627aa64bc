"""Issue 29 items 7 and 11: what `lineage` says of a run (its unlabelled footage, a run that was
not blessed, class names in `--compare`), and `report` naming a run as `lineage` does, with
only the options it uses. The stores are written with the ml_metadata API (no pipeline run)."""
import json

import pytest

from vivit_tfx import cli
from vivit_tfx.audit import lineage, metadata
from tests.test_kfp_metadata import PIPELINE, _KfpStore

CLASSES = ['calm', 'fight']
FOOTAGE = {'pattern': '/data/unlabeled_clips/train/*.tfrecord', 'videos': 12,
           'labelled_videos': 8, 'manifest_sha256': '0123abcd0123abcd'}


def _eval_config(min_examples: int) -> str:
  """An Evaluator's eval_config as TFX records it: each class's minimum test examples."""
  return json.dumps({'metrics_specs': [{'metrics': [{
      'class_name': 'ExampleCount', 'per_slice_thresholds': [
          {'slicing_specs': [{'feature_values': {'label': str(label)}}],
           'threshold': {'value_threshold': {'lower_bound': min_examples}}}
          for label in range(len(CLASSES))]}]}]})


def _store(path):
  k = _KfpStore(path)
  k.root = path.parent  # where the (absent) evaluation folders are named
  return k


def _run(k, run_id, blessed: bool, min_examples: int = 5, footage=None, evaluated=True):
  """One run: ExampleGen, a Trainer (self-training on `footage`), Evaluator, Pusher."""
  k.start_run(run_id)
  examples = k.artifact('tfx.Examples', f'/root/{run_id}/examples')
  k.task('ImportExampleGen', {}, {'examples': [examples]})
  model = k.artifact('tfx.Model', f'/root/{run_id}/model')
  custom = {'vivit': {'learning_rate': 0.001}, 'clip': {'class_names': CLASSES},
            **({'unlabeled': footage} if footage else {})}
  k.task('Trainer', {'examples': [examples]}, {'model': [model]},
         {'custom_config': json.dumps(custom)})
  blessing = k.artifact('tfx.ModelBlessing', f'/root/{run_id}/blessing', blessed=int(blessed))
  evaluation = [k.artifact('tfx.ModelEvaluation', str(k.root / f'no_evaluation_{run_id}'))
                ] if evaluated else []  # (the report reads TFMA's files: none here)
  k.task('Evaluator', {'examples': [examples], 'model': [model]},
         {'evaluation': evaluation, 'blessing': [blessing]},
         {'eval_config': _eval_config(min_examples)})
  pushed = k.artifact('tfx.PushedModel', f'/root/{run_id}/pushed', pushed=int(blessed))
  k.task('Pusher', {'model': [model], 'model_blessing': [blessing]},
         {'pushed_model': [pushed]})
  return pushed


def test_lineage_names_the_unlabelled_footage_in_text_and_json(tmp_path, capsys):
  k = _store(tmp_path / 'mlmd.sqlite')
  _run(k, 'run-a', blessed=True, footage=FOOTAGE)
  graph = lineage.upstream(k.store, lineage.pushed_model(k.store))
  text = lineage.chain_text(graph)
  assert 'Trainer (ContainerExecution) execution' in text and FOOTAGE['pattern'] in text, text
  assert '12 videos' in text and FOOTAGE['manifest_sha256'] in text, text
  trainer = next(n for n in graph.to_json()['nodes'] if n['label'] == 'Trainer')
  assert FOOTAGE['pattern'] in trainer['properties']['unlabeled_footage']
  facts = lineage.run_facts(k.store, metadata.runs(k.store, PIPELINE)[0])
  assert FOOTAGE['pattern'] in facts['inputs']['Trainer: unlabeled_footage']


def test_lineage_of_a_run_that_was_not_blessed_says_so(tmp_path, capsys):
  k = _store(tmp_path / 'mlmd.sqlite')
  pushed = _run(k, 'run-nb', blessed=False)
  assert cli.main(['lineage', '--metadata', str(tmp_path / 'mlmd.sqlite'),
                   '--out-dir', str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'run run-nb was not blessed' in err[0], err
  assert '`vivit-tfx report --run-id run-nb`' in err[0], err
  assert f'--artifact-id {pushed.id}' in err[0], err
  assert not (tmp_path / 'out').exists()


def test_compare_names_classes_not_label_numbers(tmp_path, capsys):
  k = _store(tmp_path / 'mlmd.sqlite')
  _run(k, 'run-a', blessed=True, min_examples=5)
  _run(k, 'run-b', blessed=False, min_examples=1)
  assert cli.main(['lineage', '--metadata', str(tmp_path / 'mlmd.sqlite'), '--compare',
                   'run-a', 'run-b']) == 0
  out = capsys.readouterr().out
  assert 'min_test_examples (class fight): 5 → 1' in out, out
  assert 'min_test_examples (class calm): 5 → 1' in out and 'label=' not in out, out


def _options(command: str) -> set:
  parser = cli.build_parser()
  commands = next(a for a in parser._actions if a.choices and command in a.choices).choices  # pylint: disable=protected-access
  return {s for a in commands[command]._actions for s in a.option_strings}  # pylint: disable=protected-access


def test_report_names_a_run_as_lineage_does_and_takes_only_its_options(tmp_path, capsys):
  run_naming = {'--output-root', '--metadata', '--mysql-host', '--mysql-port',
                '--mysql-database', '--mysql-user', '--mysql-password', '--grpc-host',
                '--grpc-port', '--pipeline-name'}
  assert run_naming <= _options('lineage') and run_naming <= _options('report')
  assert _options('report') == run_naming | {'-h', '--help', '--run-id', '--out-dir',
                                             '--overwrite', '--min-test-examples-per-class'}
  for unused in (['--train-steps', '99999'], ['--classes', ',,,']):
    try:
      cli.main(['report', *unused])
      raise AssertionError(f'report accepted {unused}')
    except SystemExit as e:
      assert e.code == 2
    assert 'unrecognized arguments' in capsys.readouterr().err
  # --metadata names the store, as for lineage: a foreign file is named in one line
  notes = tmp_path / 'notes.sqlite'
  notes.write_text('not a database\n')
  assert cli.main(['report', '--metadata', str(notes), '--out-dir', str(tmp_path / 'r')]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and str(notes) in err[0], err
  assert notes.read_text() == 'not a database\n' and not (tmp_path / 'r').exists()
  # and a real store found by --metadata or --output-root is reported on
  _run(_store(tmp_path / 'metadata.sqlite'), 'run-nb', blessed=False, evaluated=False)
  for naming in (['--metadata', str(tmp_path / 'metadata.sqlite')],
                 ['--output-root', str(tmp_path)]):
    assert cli.main(['report', *naming, '--pipeline-name', PIPELINE, '--run-id', 'run-nb',
                     '--out-dir', str(tmp_path / naming[0].strip('-'))]) == 0
    assert (tmp_path / naming[0].strip('-') / 'index.html').exists()


@pytest.mark.parametrize('custom', ['null', '[]', '{"unlabeled": null}', '{"unlabeled": "x"}'])
def test_a_custom_config_without_a_footage_object_names_none(monkeypatch, custom):
  monkeypatch.setattr(metadata, 'execution_property', lambda execution, name: custom)
  assert lineage.unlabeled_footage(object()) == ''
