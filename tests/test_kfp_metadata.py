"""`lineage`, `--runs`, `--compare` and `report` on a Kubeflow Pipelines v2 metadata store.

The store is built with the ml_metadata API the way KFP v2's driver and launcher write it
(kubeflow/pipelines@2.1.0 backend/src/v2/metadata/client.go: `GetPipeline` makes a
`system.Pipeline` context named after the pipeline with a `system.PipelineRun` child named
by the run id; `CreateExecution`/`PublishExecution` put `system.ContainerExecution`s with the
custom properties `task_name`, `display_name`, `inputs` (the task's input parameters) into
both contexts, with INPUT/OUTPUT events keyed by the channel name; `RecordArtifact` names the
artifact type after the schema title, `tfx.PushedModel` for TFX (tfx@v1.16.0
orchestration/kubeflow/v2/compiler_utils.py), and converter.go stores the TFX properties as
custom properties, numbers as doubles). A cached task is a new execution in state CACHED with
OUTPUT events on the artifacts the original produced.
"""
import json

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
from google.protobuf import struct_pb2

from vivit_tfx import cli
from vivit_tfx.audit import lineage, metadata, report
from vivit_tfx.pipeline import configs
from tests.conftest import LINEAGE_CHAIN, has_lineage_path

PIPELINE = 'vivit-violence'
RUNS = ('vivit-violence-x7k2p', 'vivit-violence-q9m4z')


class _KfpStore:
  """Writes MLMD records shaped like KFP v2's (see the module docstring)."""

  def __init__(self, path):
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    self.store = metadata_store.MetadataStore(config)
    put = self.store.put_context_type
    self.pipeline = self._context(put(pb.ContextType(name='system.Pipeline')), PIPELINE)
    self.run_type = put(pb.ContextType(name='system.PipelineRun'))
    self.exec_type = self.store.put_execution_type(pb.ExecutionType(
        name='system.ContainerExecution'))
    self.time = 1_700_000_000_000

  def _context(self, type_id, name, **props):
    context = pb.Context(type_id=type_id, name=name)
    for k, v in props.items():
      context.custom_properties[k].string_value = v
    [context.id] = self.store.put_contexts([context])
    return context

  def start_run(self, run_id):
    self.run = self._context(self.run_type, run_id, namespace='kubeflow',
                             pipeline_root=f'gs://b/root/{PIPELINE}/{run_id}')
    self.store.put_parent_contexts([pb.ParentContext(child_id=self.run.id,
                                                     parent_id=self.pipeline.id)])

  def artifact(self, title, uri, **props):
    artifact = pb.Artifact(type_id=self.store.put_artifact_type(pb.ArtifactType(name=title)),
                           uri=uri, state=pb.Artifact.LIVE)
    artifact.custom_properties['display_name'].string_value = title.split('.')[-1]
    for k, v in props.items():
      if isinstance(v, str):
        artifact.custom_properties[k].string_value = v
      else:
        artifact.custom_properties[k].double_value = float(v)  # bools and ints too
    return artifact

  def task(self, name, inputs, outputs, params=None, state=pb.Execution.COMPLETE):
    """One task: inputs/outputs {channel: [artifact]}; new artifacts get ids on the way."""
    self.time += 1000
    execution = pb.Execution(type_id=self.exec_type, last_known_state=state,
                             create_time_since_epoch=self.time)
    for k in ('task_name', 'display_name'):
      execution.custom_properties[k].string_value = name
    execution.custom_properties['pod_name'].string_value = f'{self.run.name}-{name.lower()}'
    struct = struct_pb2.Struct()
    struct.update(params or {})
    execution.custom_properties['inputs'].struct_value.CopyFrom(struct)
    pairs = []  # (artifact, event); MLMD gives new artifacts their ids
    for side, event_type in ((inputs, pb.Event.INPUT), (outputs, pb.Event.OUTPUT)):
      for key, artifacts in side.items():
        for a in artifacts:
          event = pb.Event(type=event_type)
          event.path.steps.add().key = key
          pairs.append((a, event))
    _, ids, _ = self.store.put_execution(execution, pairs, [self.pipeline, self.run])
    for (a, _), new_id in zip(pairs, ids):
      a.id = new_id
    return execution


@pytest.fixture(scope='module')
def kfp_store(tmp_path_factory):
  """Run 1 trains and pushes; run 2 reuses the cached data tasks and trains with another rate."""
  root = tmp_path_factory.mktemp('kfp_mlmd')
  k = _KfpStore(root / 'mlmd.sqlite')
  k.start_run(RUNS[0])
  examples = k.artifact('tfx.Examples', 'gs://b/root/ImportExampleGen/examples',
                        split_names='["train", "eval", "test"]', span=0)
  k.task('ImportExampleGen', {}, {'examples': [examples]},
         {'input_base': 'gs://b/clips', 'input_fingerprint': 'split:train,num_files:1,sha'})
  stats = k.artifact('tfx.ExampleStatistics', 'gs://b/root/StatisticsGen/statistics')
  k.task('StatisticsGen', {'examples': [examples]}, {'statistics': [stats]})
  schema = k.artifact('tfx.Schema', 'gs://b/root/ImportSchemaGen/schema')
  k.task('ImportSchemaGen', {}, {'schema': [schema]})
  validated = k.artifact('tfx.Schema', 'gs://b/root/ValidationGate/validated_schema')
  k.task('ValidationGate', {'schema': [schema], 'statistics': [stats]},
         {'validated_schema': [validated]})
  graph = k.artifact('tfx.TransformGraph', 'gs://b/root/Transform/transform_graph')
  k.task('Transform', {'examples': [examples], 'schema': [validated]},
         {'transform_graph': [graph]})

  def train_and_push(rate, version):
    model = k.artifact('tfx.Model', f'gs://b/root/Trainer/model/{version}')
    run_dir = k.artifact('tfx.ModelRun', str(root / f'no_model_run_{version}'))
    k.task('Trainer', {'examples': [examples], 'transform_graph': [graph],
                       'schema': [validated]}, {'model': [model], 'model_run': [run_dir]},
           {'custom_config': json.dumps({'vivit': {'learning_rate': rate}}),
            'train_args': '{"num_steps": 600}'})
    evaluation = k.artifact('tfx.ModelEvaluation', str(root / f'no_evaluation_{version}'))
    blessing = k.artifact('tfx.ModelBlessing', f'gs://b/root/Evaluator/blessing/{version}',
                          blessed=1)
    k.task('Evaluator', {'examples': [examples], 'model': [model]},
           {'evaluation': [evaluation], 'blessing': [blessing]})
    pushed = k.artifact('tfx.PushedModel', f'gs://b/root/Pusher/pushed_model/{version}',
                        pushed=1, pushed_version=version,
                        pushed_destination=f'gs://b/serving/vivit_violence/{version}')
    k.task('Pusher', {'model': [model], 'model_blessing': [blessing]},
           {'pushed_model': [pushed]})
    return pushed

  first = train_and_push(0.001, '1700000001')
  k.start_run(RUNS[1])
  for name, inputs, outputs in (('ImportExampleGen', {}, {'examples': [examples]}),
                                ('ImportSchemaGen', {}, {'schema': [schema]})):
    k.task(name, inputs, outputs, state=pb.Execution.CACHED)
  second = train_and_push(0.0005, '1700000002')
  return k.store, root, first, second




def test_lineage_of_the_newest_pushed_model_on_a_kfp_store(kfp_store):
  store, _, _, second = kfp_store
  pushed = lineage.pushed_model(store)
  assert pushed.id == second.id  # `tfx.PushedModel`, pushed as a double 1.0
  graph = lineage.upstream(store, pushed)
  # The same names as in a local store.
  assert has_lineage_path(graph, LINEAGE_CHAIN), lineage.chain_text(graph)
  executions = [n for n in graph.nodes.values() if n.kind == 'execution']
  assert {n.run_id for n in executions} == set(RUNS)  # data tasks from run 1, model from 2
  assert lineage.chain_text(graph).startswith('PushedModel #')


def test_runs_and_compare_on_a_kfp_store(kfp_store):
  store, _, _, _ = kfp_store
  assert [r.name for r in metadata.runs(store, PIPELINE)] == list(RUNS)
  text = lineage.runs_text(store, PIPELINE)
  assert f'run {RUNS[1]}' in text and 'Trainer' in text and 'CACHED' in text
  diff = lineage.compare_runs(store, PIPELINE, *RUNS)
  assert diff['hyperparameters'] == {'learning_rate': [0.001, 0.0005]}
  assert diff['inputs'] == {}  # same data, schema and transform graph (cached in run 2)
  assert diff['blessed'] == [True, True]
  facts = lineage.run_facts(store, metadata.runs(store, PIPELINE)[0])
  assert facts['inputs']['input_fingerprint'] == 'split:train,num_files:1,sha'
  assert facts['hyperparameters']['train_args'] == '{"num_steps": 600}'


def test_lineage_cli_reads_a_kfp_store(kfp_store, tmp_path, capsys):
  _, root, first, _ = kfp_store
  rc = cli.main(['lineage', '--metadata', str(root / 'mlmd.sqlite'), '--artifact-id',
                 str(first.id), '--out-dir', str(tmp_path), '--json'])
  out = json.loads(capsys.readouterr().out)
  assert rc == 0
  types = {n['type'] for n in out['nodes'] if n['kind'] == 'artifact'}
  assert {'PushedModel', 'Model', 'Examples', 'Schema'} <= types
  labels = {n['label'] for n in out['nodes'] if n['kind'] == 'execution'}
  assert {'Pusher', 'Trainer', 'Transform', 'ImportExampleGen'} <= labels


def test_report_reads_a_kfp_store(kfp_store, tmp_path, monkeypatch):
  store, _, _, _ = kfp_store
  # The Evaluator's output is not what this test is about: TFMA's reader is stubbed.
  stub = {'load': lambda uri: None, 'confusion_matrix': lambda r: {},
          'metrics_by_slice': lambda r, classes=(), shown=False: [
              ('overall', {'binary_accuracy': 0.875})],
          'calibration': lambda r: [], 'validation': lambda uri, *args: (True, [])}
  for name, fn in stub.items():
    monkeypatch.setattr(report.tfma_results, name, fn)
  config = configs.PipelineConfig(output_root=str(tmp_path))
  page = report.build(config, RUNS[0], str(tmp_path / 'report'), store=store)
  with open(page) as f:
    html = f.read()
  assert f'Run {RUNS[0]}' in html and 'Trainer' in html and 'Pusher' in html
  assert 'Pushed to gs://b/serving/vivit_violence/1700000001' in html
  assert '0.8750' in html and 'BLESSED' in html
