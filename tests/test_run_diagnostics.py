"""scripts/run_diagnostics.py: the pre-training's plateau exit and the pseudo-labels' agreement
with their folders, read from a run's output root."""
import json
import os

from tests.conftest import load_script

run_diagnostics = load_script('run_diagnostics')


def test_plateau_exit_is_the_first_window_whose_mean_is_below_the_plateau():
  losses = [1.0] * 100 + [0.9] * 100  # windows of 50: the mean reaches 0.97 at 15 steps of 0.9
  assert run_diagnostics.plateau_exit(losses) == 115
  assert run_diagnostics.plateau_exit([1.0] * 200) is None
  assert run_diagnostics.plateau_exit([0.5] * 10) is None  # shorter than a window
  assert run_diagnostics.plateau_exit([0.5] * 50) == 50  # the first whole window counts


def _write(path, payload):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(payload, f)


def test_a_run_root_reports_its_plateau_exit_and_the_pseudo_labels_its_folders_confirm(tmp_path):
  root = str(tmp_path / 'run')
  _write(f'{root}/pipeline_root/PretrainTrainer/model/8/Format-Serving/history.json',
         {'step': list(range(1, 201)), 'loss': [1.0] * 100 + [0.9] * 100})
  _write(f'{root}/pipeline_root/Trainer/model_run/9/pseudo_labels.json',
         {'scored': 5, 'chosen': 3, 'per_class': {}, 'threshold': 0.9, 'videos': [
             {'source_path': 'Violence/a.mp4', 'label': 'Violence', 'probability': 0.95},
             {'source_path': 'NonViolence/b.mp4', 'label': 'NonViolence', 'probability': 0.02},
             {'source_path': 'NonViolence/c.mp4', 'label': 'Violence', 'probability': 0.91}]})
  line = run_diagnostics.describe(root)
  assert 'left the plateau at step 115' in line
  assert 'last 80 steps 0.900' in line
  assert 'pseudo-labelled 3 of 5, 2 with their folder\'s class' in line


def test_a_root_with_neither_says_so(tmp_path):
  line = run_diagnostics.describe(str(tmp_path))
  assert line.endswith('no pre-training history or pseudo-labels found')
  _write(f'{tmp_path}/pipeline_root/PretrainTrainer/model/8/Format-Serving/history.json',
         {'step': [1, 2], 'loss': [1.0, 1.0]})
  assert 'never left the plateau' in run_diagnostics.describe(str(tmp_path))
