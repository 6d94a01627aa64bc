"""Kubeflow Pipelines v2: the compiled spec parses strictly, loads in the KFP SDK, mirrors the
local pipeline's components and dependencies, carries image and accelerator, uploads nothing.

Two targets: vertex (Vertex names, Resolver kept) and kfp (open-source KFP: schema 2.1.0, a
Kubernetes resource name, a PlatformSpec node selector, no Resolver task)."""
import os

import kfp
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from vivit_tfx.kubeflow import options, runner
from vivit_tfx import cli
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline.pipeline import LAST_BLESSED, create_pipeline

IMAGE = 'registry.example/vivit-violence-tfx:test'


def _compile(tmp, *extra):
  root = str(tmp / 'pipeline_root')
  out = str(tmp / 'spec' / 'pipeline.yaml')
  rc = cli.main(['compile', '--image', IMAGE, '--pipeline-root', root, '--output', out,
                 '--clips-dir', 'gs://bucket/clips', '--accelerator-type', 'NVIDIA_TESLA_T4',
                 '--accelerator-count', '2', '--beam-preset', 'dataflow',
                 '--beam-args', '--project=p1 --region=europe-west4', *extra])
  assert rc == 0
  return out, root


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  out, root = _compile(tmp_path_factory.mktemp('vertex'), '--target', 'vertex')
  with open(out) as f:
    return yaml.safe_load(f), out, root


@pytest.fixture(scope='module')
def compiled_kfp(tmp_path_factory):
  """The default target, open-source KFP: [PipelineSpec, PlatformSpec] YAML documents."""
  out, _ = _compile(tmp_path_factory.mktemp('kfp'))
  with open(out) as f:
    return list(yaml.safe_load_all(f)), out


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
  local = create_pipeline(configs.PipelineConfig(output_root=str(tmp_path)),
                          baseline=LAST_BLESSED)  # the Vertex spec's baseline
  for component in local.components:
    if component.id == 'latest_blessed_model_resolver':
      assert any(t.startswith(component.id) for t in tasks)  # compiled to resolver tasks
      continue
    assert component.id in tasks
    expected = {u.id for u in component.upstream_nodes}
    deps = {d.split('-model')[0] for d in tasks[component.id].get('dependentTasks', [])}
    assert deps == expected, component.id


def test_every_task_uses_the_image_and_trainer_and_evaluator_have_the_accelerator(compiled):
  spec, _, _ = compiled
  executors = spec['deploymentSpec']['executors']
  containers = [e['container'] for e in executors.values() if 'container' in e]
  assert containers and all(c['image'] == IMAGE for c in containers)
  trainer = executors['Trainer_executor']['container']
  assert trainer['resources']['accelerator'] == {'type': 'NVIDIA_TESLA_T4', 'count': '2'}
  evaluator = executors['Evaluator_executor']['container']
  assert evaluator['resources']['accelerator'] == {'type': 'NVIDIA_TESLA_T4', 'count': '1'}
  assert not any('accelerator' in c.get('resources', {}) for name, e in executors.items()
                 if name not in ('Trainer_executor', 'Evaluator_executor')
                 for c in [e.get('container', {})])


def test_beam_preset_and_overrides_reach_the_spec(compiled):
  spec, _, _ = compiled
  text = yaml.safe_dump(spec)
  assert '--runner=DataflowRunner' in text and '--project=p1' in text


def test_compiling_uploads_and_builds_nothing(compiled):
  _, _, root = compiled
  assert not os.path.exists(root)  # no _wheels or anything else written to the root


def test_kfp_target_gets_kubernetes_resource_and_node_selector(compiled_kfp):
  (spec, platform), path = compiled_kfp
  executors = spec['deploymentSpec']['executors']
  trainer = executors['Trainer_executor']['container']
  assert trainer['resources']['accelerator'] == {'type': 'nvidia.com/gpu', 'count': '2'}
  kubernetes = platform['platforms']['kubernetes']['deploymentSpec']['executors']
  t4 = {'nodeSelector': {'labels': {'cloud.google.com/gke-accelerator': 'nvidia-tesla-t4'}}}
  assert kubernetes == {'Trainer_executor': t4, 'Evaluator_executor': t4}
  # The Evaluator scores candidate and baseline on every test video: one GPU by default.
  evaluator = executors['Evaluator_executor']['container']
  assert evaluator['resources']['accelerator'] == {'type': 'nvidia.com/gpu', 'count': '1'}
  assert 'resources' not in executors['Transform_executor']['container']
  # The open-source API server accepts schema 2.1.0 only and cannot run Resolver executors.
  assert spec['schemaVersion'] == '2.1.0'
  assert not any('resolver' in e for e in executors.values())
  assert not any('resolver' in t for t in spec['root']['dag']['tasks'])
  # What kfp.Client does before upload: both documents parse strictly.
  doc = kfp.client.client._extract_pipeline_yaml(path)  # pylint: disable=protected-access
  assert doc.pipeline_spec.schema_version == '2.1.0'
  selector = doc.platform_spec.platforms['kubernetes'].deployment_spec.executors[
      'Trainer_executor']
  assert dict(selector['nodeSelector']['labels']) == {
      'cloud.google.com/gke-accelerator': 'nvidia-tesla-t4'}
  assert 'Evaluator_executor' in doc.platform_spec.platforms[
      'kubernetes'].deployment_spec.executors


def test_kfp_sdk_loads_the_kfp_target(compiled_kfp, tmp_path):
  _, path = compiled_kfp
  component = kfp.components.load_component_from_file(path)
  out = str(tmp_path / 'recompiled.yaml')
  kfp.compiler.Compiler().compile(component, out)
  assert os.path.getsize(out) > 0


def test_vertex_target_keeps_vertex_names_and_the_resolver(compiled):
  spec, path, _ = compiled
  assert any('resolver' in t for t in spec['root']['dag']['tasks'])
  with open(path) as f:
    assert len(list(yaml.safe_load_all(f))) == 1  # no PlatformSpec document


@pytest.mark.parametrize('target,kind,selector,expected', [
    ('kfp', 'NVIDIA_L4', [], ('nvidia.com/gpu', {
        'cloud.google.com/gke-accelerator': 'nvidia-l4'})),
    ('kfp', 'NVIDIA_A100_80GB', [], ('nvidia.com/gpu', {
        'cloud.google.com/gke-accelerator': 'nvidia-a100-80gb'})),
    ('kfp', 'nvidia.com/gpu', [], ('nvidia.com/gpu', {})),
    ('kfp', 'amd.com/gpu', ['pool=mi300'], ('amd.com/gpu', {'pool': 'mi300'})),
    ('kfp', 'NVIDIA_TESLA_T4', ['cloud.google.com/gke-accelerator=nvidia-l4'],
     ('nvidia.com/gpu', {'cloud.google.com/gke-accelerator': 'nvidia-l4'})),
    ('kfp', '', [], ('', {})),
    ('vertex', 'NVIDIA_TESLA_T4', [], ('NVIDIA_TESLA_T4', {})),
    ('vertex', 'TPU_V3', [], ('TPU_V3', {})),
])
def test_accelerator_mapping(target, kind, selector, expected):
  deployment = options.Deployment(image=IMAGE, target=target, accelerator_type=kind,
                                  node_selector=options.parse_node_selector(selector))
  assert options.trainer_accelerator(deployment) == expected


@pytest.mark.parametrize('target,kind,selector,message', [
    ('kfp', 'TPU_V3', [], 'Kubernetes resource name'),
    ('vertex', 'nvidia.com/gpu', [], 'Vertex accelerator names'),
    ('vertex', 'NVIDIA_L4', ['a=b'], 'kfp only'),
])
def test_accelerator_mistakes_are_one_clear_line(target, kind, selector, message, tmp_path,
                                                 capsys):
  argv = ['compile', '--image', IMAGE, '--pipeline-root', str(tmp_path / 'root'),
          '--output', str(tmp_path / 'p.yaml'), '--target', target,
          '--accelerator-type', kind] + [a for s in selector for a in ('--node-selector', s)]
  assert cli.main(argv) == 1
  err = capsys.readouterr().err
  assert message in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'p.yaml')


def test_non_default_frame_slots_need_a_schema():
  """The image's curated schema fixes N = 80 frame slots (8 fps, 10 s): settings that store
  another N need --schema-file; another T with the same N does not."""
  for other in (dict(sample_fps=0.0), dict(max_duration_s=5.0)):  # N = 8, N = 40
    with pytest.raises(ValueError, match='--schema-file with a schema for (8|40) slots'):
      runner.kubeflow_config(configs.PipelineConfig(**other))
  assert runner.kubeflow_config(configs.PipelineConfig(num_frames=16)).schema_file
  assert options.beam_args_for('direct').startswith('--direct')


def test_per_component_resources_from_compile_options():
  deployment = options.Deployment(image=IMAGE, accelerator_type='NVIDIA_L4',
                                  accelerator_count=2, trainer_memory_gib=64,
                                  transform_cpu=8, transform_memory_gib=32)
  resources = options.component_resources(deployment)
  assert resources['Trainer'] == options.Resources(0, 64, 2)
  assert resources['Evaluator'] == options.Resources(0, 64, 1)  # defaults: 1 GPU, Trainer's RAM
  assert resources['Transform'] == options.Resources(8, 32, 0)
  cpu_only = options.component_resources(options.Deployment(image=IMAGE,
                                                            evaluator_accelerator_count=3))
  assert cpu_only['Evaluator'].accelerators == 0  # no accelerator type: nothing to count
  spec = runner.resource_spec(resources['Evaluator'], 'nvidia.com/gpu')
  assert (spec.memory_limit, spec.accelerator.type, spec.accelerator.count) == (
      64, 'nvidia.com/gpu', 1)
  assert runner.resource_spec(options.Resources(), 'nvidia.com/gpu') is None


def test_pretraining_pod_gets_the_trainers_accelerator_and_limits(tmp_path):
  out, _ = _compile(tmp_path, '--target', 'vertex', '--pretrain', '--preset', 'vivit-tiny',
                    '--trainer-memory-gib', '48')
  with open(out) as f:
    executors = yaml.safe_load(f)['deploymentSpec']['executors']
  pretrain = executors['PretrainTrainer_executor']['container']['resources']
  assert pretrain == executors['Trainer_executor']['container']['resources']
  assert pretrain['accelerator'] == {'type': 'NVIDIA_TESLA_T4', 'count': '2'}
  assert pretrain['memoryLimit'] == 48
  # kfp on CPU nodes picked by a label: both training pods get it (the Trainer alone did).
  out = str(tmp_path / 'cpu' / 'pipeline.yaml')
  assert cli.main(['compile', '--image', IMAGE, '--pipeline-root', str(tmp_path / 'root'),
                   '--output', out, '--clips-dir', 'gs://bucket/clips', '--pretrain',
                   '--preset', 'vivit-tiny', '--node-selector', 'pool=train']) == 0
  with open(out) as f:
    _, platform = yaml.safe_load_all(f)
  selectors = platform['platforms']['kubernetes']['deploymentSpec']['executors']
  assert selectors == {e: {'nodeSelector': {'labels': {'pool': 'train'}}}
                       for e in ('PretrainTrainer_executor', 'Trainer_executor')}


def test_compile_names_the_precision_a_gpu_without_bfloat16_gets():
  bf16 = configs.PipelineConfig(preset='vivit-b-16x2').vivit_config().precision
  t4 = options.Deployment(image=IMAGE, accelerator_type='NVIDIA_TESLA_T4')
  assert 'T4 GPUs have no bfloat16' in options.precision_note(t4, bf16)
  by_label = options.Deployment(image=IMAGE, accelerator_type='nvidia.com/gpu',
                                node_selector={'nvidia.com/gpu.product': 'Tesla-V100-SXM2'})
  assert 'V100' in options.precision_note(by_label, bf16)
  l4 = options.Deployment(image=IMAGE, accelerator_type='NVIDIA_L4')
  assert options.precision_note(l4, bf16) == '' == options.precision_note(t4, 'float32')


def test_compile_checks_the_class_count_against_the_image_schema(tmp_path):
  three = configs.PipelineConfig(classes='Normal,Abuse,Fighting', clips_dir=str(tmp_path / 'c'),
                                 videos_dir=str(tmp_path / 'v'))
  with pytest.raises(ValueError, match="image's schema allows 2 classes; this dataset has 3"):
    runner.kubeflow_config(three)
  assert runner.kubeflow_config(three.replace(schema_file='gs://b/three_class_schema.pbtxt'))


def test_the_trainer_takes_class_names_from_the_data_where_it_runs(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import model  # pylint: disable=g-import-not-at-top
  trainer = next(c for c in create_pipeline(configs.PipelineConfig(
      clips_dir='gs://bucket/clips', output_root=str(tmp_path / 'o'))).components
                 if c.id == 'Trainer')
  assert '"clips_summary": "gs://bucket/clips/summary.json"' in str(
      trainer.exec_properties['custom_config'])
  summary = tmp_path / 'summary.json'
  summary.write_text(json.dumps({'classes': ['Calm', 'Fight']}))
  assert model.data_class_names(str(summary), 2) == ['Calm', 'Fight']
  assert model.data_class_names(str(tmp_path / 'absent.json'), 2) == []
  with pytest.raises(ValueError, match=r'the data has 2 classes \(Calm, Fight\); the pipeline '
                                       'was compiled for 3'):
    model.data_class_names(str(summary), 3)
