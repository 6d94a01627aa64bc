"""Kubeflow Pipelines v2: the compiled spec parses strictly, loads in the KFP SDK, mirrors the
local pipeline's components and dependencies, carries image and accelerator, uploads nothing."""
import os

import kfp
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from vivit_tfx.kubeflow import options, runner
from vivit_tfx import cli
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline.pipeline import create_pipeline

IMAGE = 'registry.example/vivit-violence-tfx:test'


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('kfp')
  root = str(tmp / 'pipeline_root')
  out = str(tmp / 'spec' / 'pipeline.yaml')
  rc = cli.main(['compile', '--image', IMAGE, '--pipeline-root', root, '--output', out,
                 '--clips-dir', 'gs://bucket/clips', '--accelerator-type', 'NVIDIA_TESLA_T4',
                 '--accelerator-count', '2', '--beam-preset', 'dataflow',
                 '--beam-args', '--project=p1 --region=europe-west4'])
  assert rc == 0
  with open(out) as f:
    return yaml.safe_load(f), out, root


def test_spec_parses_strictly_into_pipeline_spec(compiled):
  spec, _, _ = compiled
  message = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # rejects unknowns
  assert message.pipeline_info.name == configs.PIPELINE_NAME


def test_kfp_sdk_loads_and_recompiles(compiled, tmp_path):
  _, path, _ = compiled
  component = kfp.components.load_component_from_file(path)
  out = str(tmp_path / 'recompiled.yaml')
  kfp.compiler.Compiler().compile(component, out)
  assert os.path.getsize(out) > 0


def test_tasks_and_dependencies_match_the_local_pipeline(compiled, tmp_path):
  spec, _, _ = compiled
  tasks = spec['root']['dag']['tasks']
  local = create_pipeline(configs.PipelineConfig(output_root=str(tmp_path)))
  for component in local.components:
    if component.id == 'latest_blessed_model_resolver':
      assert any(t.startswith(component.id) for t in tasks)  # compiled to resolver tasks
      continue
    assert component.id in tasks
    expected = {u.id for u in component.upstream_nodes}
    deps = {d.split('-model')[0] for d in tasks[component.id].get('dependentTasks', [])}
    assert deps == expected, component.id


def test_every_task_uses_the_image_and_trainer_has_the_accelerator(compiled):
  spec, _, _ = compiled
  executors = spec['deploymentSpec']['executors']
  containers = [e['container'] for e in executors.values() if 'container' in e]
  assert containers and all(c['image'] == IMAGE for c in containers)
  trainer = executors['Trainer_executor']['container']
  assert trainer['resources']['accelerator'] == {'type': 'NVIDIA_TESLA_T4', 'count': '2'}
  assert not any('accelerator' in c.get('resources', {})
                 for name, e in executors.items() if name != 'Trainer_executor'
                 for c in [e.get('container', {})])


def test_beam_preset_and_overrides_reach_the_spec(compiled):
  spec, _, _ = compiled
  text = yaml.safe_dump(spec)
  assert '--runner=DataflowRunner' in text and '--project=p1' in text


def test_compiling_uploads_and_builds_nothing(compiled):
  _, _, root = compiled
  assert not os.path.exists(root)  # no _wheels or anything else written to the root


def test_non_default_clip_length_needs_a_schema():
  with pytest.raises(ValueError, match='--schema-file'):
    runner.kubeflow_config(configs.PipelineConfig(num_frames=16))
  assert options.beam_args_for('direct').startswith('--direct')
