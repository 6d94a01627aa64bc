"""Cache keys follow the code and the schema: an edit to a module a component loads changes
that component's exec properties (its cache key), an unrelated edit changes none, and an
edited schema file at the same path re-executes ImportSchemaGen."""
import json
import os
import shutil

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from vivit_tfx import schemas
from vivit_tfx.audit import metadata
from vivit_tfx.components import fingerprint
from vivit_tfx.components.schema_import import ImportSchemaGen
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline import pipeline as pipeline_lib


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
  """A copy of the vivit_tfx sources that the fingerprints read instead of the real ones."""
  root = str(tmp_path / 'vivit_tfx')
  shutil.copytree(fingerprint.package_root(), root,
                  ignore=shutil.ignore_patterns('__pycache__'))
  monkeypatch.setattr(fingerprint, 'package_root', lambda: root)
  return root


def _edit(root, relpath):
  with open(os.path.join(root, relpath), 'a') as f:
    f.write('\n# edited\n')


def test_module_closure_follows_imports():
  root = fingerprint.package_root()
  rel = lambda files: {os.path.relpath(f, root) for f in files}
  trainer = rel(fingerprint.module_files(['vivit_tfx.models.trainer.model']))
  assert {'models/trainer/model.py', 'models/network/vivit.py', 'models/trainer/export.py',
          'data/features.py', 'models/__init__.py', 'models/trainer/__init__.py',
          '__init__.py'} <= trainer
  assert not {'cli/__init__.py', 'cli/pipeline.py', 'audit/lineage.py'} & trainer
  example_gen = rel(fingerprint.module_files(
      ['vivit_tfx.components.video_example_gen.component']))
  assert {'components/video_example_gen/executor.py', 'data/ingest.py',
          'data/video_reader.py', 'data/clip_example.py'} <= example_gen


@pytest.mark.parametrize('relpath,changed', [
    # the Trainers' export computes drift statistics (data/drift_stats.py → synthetic.py)
    ('data/video_reader.py', {'VideoExampleGen', 'Trainer', 'PretrainTrainer', 'TFLiteExport'}),
    ('components/validation_gate.py', {'ValidationGate'}),
    ('components/clip_transform.py', {'Transform'}),
    ('models/trainer/preprocessing.py', {'Transform'}),
    # the pre-trained encoder's code; TFLiteExport converts the model
    ('models/network/vivit.py', {'Trainer', 'PretrainTrainer', 'TFLiteExport'}),
    ('data/features.py', {'VideoExampleGen', 'Transform', 'Trainer', 'PretrainTrainer',
                          'TFLiteExport'}),
    ('components/tflite_export.py', {'TFLiteExport'}),
    ('audit/lineage.py', set()),
])
def test_an_edit_changes_the_keys_of_the_components_that_load_it(package_copy, relpath,
                                                                  changed):
  before = pipeline_lib.code_fingerprints(package_copy)
  _edit(package_copy, relpath)
  after = pipeline_lib.code_fingerprints(package_copy)
  assert {name for name in before if before[name] != after[name]} == changed


def test_unreadable_schema_has_an_empty_content_key(tmp_path):
  assert fingerprint.file_content(str(tmp_path / 'absent.pbtxt')) == ''
  path = tmp_path / 'schema.pbtxt'
  path.write_text('feature {}')
  assert len(fingerprint.file_content(str(path))) == 64


def _exec_properties(config):
  pipeline = pipeline_lib.create_pipeline(config)
  return {c.id: json.dumps(c.exec_properties, sort_keys=True, default=str)
          for c in pipeline.components}


def test_pipeline_exec_properties_follow_code_and_schema(package_copy, tmp_path):
  schema_file = str(tmp_path / 'schema.pbtxt')
  shutil.copy(schemas.CLIP_SCHEMA_PATH, schema_file)
  config = configs.PipelineConfig(output_root=str(tmp_path / 'out'), input_mode='videos',
                                  videos_dir=str(tmp_path / 'videos'), schema_file=schema_file)
  base = _exec_properties(config)
  changed = lambda new: {k for k in base if base[k] != new[k]}
  _edit(package_copy, 'components/video_example_gen/executor.py')
  after_code = _exec_properties(config)
  assert changed(after_code) == {'VideoExampleGen'}
  with open(schema_file, 'a') as f:  # same path, new content
    f.write('\n# reviewed\n')
  assert {k for k in after_code if after_code[k] != _exec_properties(config)[k]} == {
      'ImportSchemaGen'}


def test_edited_schema_reexecutes_import_schema_gen(tmp_path):
  """Two LocalDagRunner runs of ImportSchemaGen: same path, new content → not cached."""
  schema_file = str(tmp_path / 'schema.pbtxt')
  shutil.copy(schemas.CLIP_SCHEMA_PATH, schema_file)
  db = str(tmp_path / 'metadata.sqlite')

  def run():
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name='schema-cache', pipeline_root=str(tmp_path / 'root'),
        components=[ImportSchemaGen(schema_file=schema_file)], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            db)))
    store = metadata.open_sqlite(db)
    return [e.last_known_state for e in store.get_executions()]

  run()
  assert run() == [metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED]
  with open(schema_file, 'a') as f:
    f.write('\n# reviewed\n')
  assert run()[-1] == metadata_store_pb2.Execution.COMPLETE
