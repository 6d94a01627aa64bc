"""The typed clip contract (issue 33): a model's clip settings travel as one type,
`ModelClipConfig` (written with `write`, read with `clip_config_of`), and the ingest summary as
`IngestSummary` (`write`, `read`); no other module parses clip_config.json or summary.json."""
import ast
import json
import os

import pytest

import vivit_tfx
from vivit_tfx.data import ingest
from vivit_tfx.data.clip_config import ModelClipConfig, clip_config_of, clip_config_path

PACKAGE = os.path.dirname(vivit_tfx.__file__)
CONTRACT_MODULES = {os.path.join('data', 'clip_config.py'), os.path.join('data', 'ingest.py')}
# What names those two files in code: their constants, path helpers and literal names.
CONTRACT_FILES = {'CLIP_CONFIG_FILE', 'clip_config_path', 'SUMMARY', 'clip_config.json',
                  'summary.json'}
JSON_READERS = {'load', 'loads', 'read_json'}


def _parses_a_contract_file(function: ast.AST) -> bool:
  """True when `function` both parses JSON and names clip_config.json or summary.json."""
  reads = names = False
  for node in ast.walk(function):
    if isinstance(node, ast.Call):
      called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
          node.func, 'id', '')
      reads |= called in JSON_READERS
    if isinstance(node, ast.Attribute):
      names |= node.attr in CONTRACT_FILES
    elif isinstance(node, ast.Name):
      names |= node.id in CONTRACT_FILES
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      names |= any(node.value.endswith(f) for f in ('clip_config.json', 'summary.json'))
  return reads and names


def _functions_parsing_contract_files(root: str):
  found = []
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      relative = os.path.relpath(path, root)
      if not name.endswith('.py') or relative in CONTRACT_MODULES:
        continue
      tree = ast.parse(open(path, encoding='utf-8').read())
      found += [f'{relative}:{f.lineno} {f.name}' for f in ast.walk(tree)
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                and _parses_a_contract_file(f)]
  return found


def test_no_module_outside_the_contract_parses_clip_config_or_summary_json():
  assert _functions_parsing_contract_files(PACKAGE) == []


def test_the_check_finds_a_module_that_parses_them_itself(tmp_path):
  (tmp_path / 'tool.py').write_text(
      'import json, os\n'
      'def classes(clips):\n'
      '  return json.load(open(os.path.join(clips, "summary.json")))["classes"]\n'
      'def frames(model):\n'
      '  return read_json(clip_config_path(model))["num_frames"]\n')
  assert _functions_parsing_contract_files(str(tmp_path)) == ['tool.py:2 classes',
                                                              'tool.py:4 frames']


def test_a_model_clip_config_round_trips_through_its_file(tmp_path):
  clip = ModelClipConfig(num_frames=16, frame_size=(96, 128), sample_fps=12.5, num_views=4,
                         class_names=('calm', 'fight'), positive_class='fight',
                         pixels={'mean': [0.5] * 3, 'std': [0.5] * 3},
                         vivit={'num_frames': 16, 'hidden_size': 192},
                         provenance={'init_checkpoint': 'gs://b/vit.npz'})
  model = tmp_path / 'model'
  clip.write(clip_config_path(str(model)))  # its folder (assets.extra) made
  assert clip_config_of(str(model)) == clip
  assert ModelClipConfig.from_dict(json.loads(json.dumps(clip.to_dict()))) == clip


def test_a_clip_config_written_before_the_type_reads_with_its_provenance(tmp_path):
  """The Trainer's export wrote the clip dict, the checkpoint facts and 'vivit' at the top
  level, with no jpeg_quality or num_views: the same file reads, and writes back the same."""
  old = {'class_names': ['NonViolence', 'Violence'], 'num_frames': 8,
         'frame_size': [64, 64], 'sample_fps': 8.0, 'max_duration_s': 10.0,
         'pixels': {'mean': [0.4] * 3}, 'positive_class': 'Violence',
         'init_checkpoint': '/ckpt', 'init_checkpoint_sha256': 'ab' * 32,
         'vivit': {'num_frames': 8}, 'tflite': {'quantize': 'int8'}}
  clip = ModelClipConfig.from_dict(old)
  assert (clip.num_frames, clip.frame_size, clip.num_views, clip.jpeg_quality) == (
      8, (64, 64), 1, 90)
  assert clip.provenance == {'init_checkpoint': '/ckpt', 'init_checkpoint_sha256': 'ab' * 32,
                             'tflite': {'quantize': 'int8'}}
  assert {k: v for k, v in clip.to_dict().items() if k in old} == old


def test_the_clip_length_is_written_once_and_the_architecture_reads_it_back(tmp_path):
  from vivit_tfx.models.network.vivit_config import ViViTConfig  # pylint: disable=g-import-not-at-top
  architecture = ViViTConfig(num_frames=16, image_size=(32, 32)).to_dict()
  clip = ModelClipConfig(num_frames=16).with_architecture(architecture)
  path = clip_config_path(str(tmp_path / 'model'))
  clip.write(path)
  with open(path) as f:
    written = json.load(f)
  assert written['num_frames'] == 16 and 'num_frames' not in written['vivit']
  read = clip_config_of(str(tmp_path / 'model')).architecture()
  assert ViViTConfig.from_dict(read) == ViViTConfig.from_dict(architecture)
  assert read['num_frames'] == 16
  with pytest.raises(ValueError, match='8 frames, the clip config 16'):
    clip.with_architecture({**architecture, 'num_frames': 8})
  # a file written before: num_frames in both places, read the same
  assert ModelClipConfig.from_dict({'num_frames': 16, 'vivit': architecture}).architecture() == (
      architecture)


def test_with_classes_keeps_a_named_positive_class_else_a_binary_sets_second():
  clip = ModelClipConfig(class_names=('a', 'b', 'c'), positive_class='c')
  assert clip.with_classes(['c', 'd', 'e']).positive_class == 'c'
  assert clip.with_classes(['x', 'y']).positive_class == 'y'
  assert clip.with_classes(['x', 'y', 'z']).positive_class == ''
  # A binary model's sigmoid scores label 1, whatever class was named positive before.
  assert ModelClipConfig(positive_class='x').with_classes(['x', 'y']).positive_class == 'y'


def test_the_trainers_clip_contract_follows_the_same_positive_class_rule():
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  config = configs.PipelineConfig(classes='Fight,Hug,Walk', positive_class='Fight')
  assert config.model_clip_config(['Fight', 'Hug', 'Walk'], {}).positive_class == 'Fight'
  assert config.model_clip_config(['Walk', 'Fight'], {}).positive_class == 'Fight'
  assert config.model_clip_config(['Hug', 'Walk'], {}).positive_class == 'Walk'


def test_the_ingest_summary_round_trips_and_ignores_keys_of_other_versions(tmp_path):
  summary = ingest.IngestSummary(input_root='/v', output_dir=str(tmp_path), classes=['a', 'b'],
                                 layout='rlvs', clips={'train': {'a': 3, 'b': 2}},
                                 skipped=[], warnings=[], seconds=1.5, total_inputs=5)
  path = summary.write(str(tmp_path))
  assert ingest.IngestSummary.read(str(tmp_path)) == ingest.IngestSummary.read(path) == summary
  assert summary.videos('train') == 5 and summary.videos('test') == 0
  with open(path) as f:
    data = json.load(f)
  with open(path, 'w') as f:
    json.dump({**data, 'from_a_later_version': 1}, f)
  assert ingest.IngestSummary.read(path) == summary


def test_reading_a_missing_summary_is_a_file_not_found_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no ingest summary'):
    ingest.IngestSummary.read(str(tmp_path))
