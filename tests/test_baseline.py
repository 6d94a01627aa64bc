"""The Evaluators' baseline is the model in service, the one behind the newest push.

Reproduced in issue 32's loop: with --reviewed-clips, a candidate the test split's Evaluator
blessed but the reviewed clips refused was never pushed, yet the next run's Resolver (TFX's
LatestBlessedModelStrategy) took it as the baseline.
"""
from ml_metadata.proto import metadata_store_pb2 as pb
from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.dsl.components.common import resolver
from tfx.types import artifact_utils, standard_artifacts

from vivit_tfx.audit import metadata
from vivit_tfx.pipeline import baseline, configs
from vivit_tfx.pipeline.pipeline import LAST_BLESSED, PUSHER, create_pipeline


class _Store:
  """A local-style MLMD store: tfx artifacts, executions with keyed INPUT/OUTPUT events."""

  def __init__(self, path):
    self.store = metadata.open_sqlite(str(path))

  def artifact(self, cls, uri, **custom):
    a = cls()
    a.type_id = self.store.put_artifact_type(a.artifact_type)
    a.uri = uri
    for k, v in custom.items():
      a.set_int_custom_property(k, v)
    return a

  def execution(self, name, inputs, outputs):
    type_id = self.store.put_execution_type(pb.ExecutionType(name=name))
    pairs = []
    for side, kind in ((inputs, pb.Event.INPUT), (outputs, pb.Event.OUTPUT)):
      for key, a in side.items():
        event = pb.Event(type=kind)
        event.path.steps.add().key = key
        pairs.append((a.mlmd_artifact, event))
    _, ids, _ = self.store.put_execution(
        pb.Execution(type_id=type_id, last_known_state=pb.Execution.COMPLETE), pairs, [])
    for (mlmd_artifact, _), new_id in zip(pairs, ids):
      mlmd_artifact.id = new_id

  def of_type(self, channel):
    """All artifacts of a channel's type, as tfx Artifacts (what the Resolver is handed)."""
    artifact_type = self.store.get_artifact_type(channel.type.TYPE_NAME)
    return [artifact_utils.deserialize_artifact(artifact_type, a)
            for a in self.store.get_artifacts_by_type(channel.type.TYPE_NAME)]


def _loop_store(tmp_path):
  """Run 1 pushed model A; run 2's model B was blessed on the test split and refused on the
  reviewed clips (no Pusher ran); run 3's model C was refused on the test split (pushed = 0)."""
  s = _Store(tmp_path / 'metadata.sqlite')
  models = {}
  for run, name in enumerate('ABC', 1):
    model = models[name] = s.artifact(standard_artifacts.Model, f'/root/Trainer/model/{run}')
    s.execution('Trainer', {}, {'model': model})
    blessing = s.artifact(standard_artifacts.ModelBlessing, f'/root/Evaluator/blessing/{run}',
                          blessed=int(name != 'C'))
    s.execution('Evaluator', {'model': model}, {'blessing': blessing})
    blessing.set_int_custom_property('current_model_id', model.id)
    s.store.put_artifacts([blessing.mlmd_artifact])
    if name != 'B':  # B: the ReviewedEvaluator's Cond held the Pusher back
      push = s.artifact(standard_artifacts.PushedModel, f'/serving/{run}',
                        pushed=int(name == 'A'))
      s.execution('Pusher', {'model': model, 'model_blessing': blessing},
                  {'pushed_model': push})
  return s, models


def _resolver(pipeline):
  return next(c for c in pipeline.components if isinstance(c, tfx.dsl.Resolver))


def test_the_baseline_is_the_last_pushed_model_not_the_last_blessed_one(tmp_path):
  s, models = _loop_store(tmp_path)
  node = _resolver(create_pipeline(configs.PipelineConfig(
      output_root=str(tmp_path), reviewed_clips=str(tmp_path / 'reviewed'))))
  strategy = node.exec_properties[resolver.RESOLVER_STRATEGY_CLASS]()
  inputs = {key: s.of_type(channel) for key, channel in node.inputs.items()}
  chosen = strategy.resolve_artifacts(s.store, inputs)['model']
  assert [m.uri for m in chosen] == [models['A'].uri]  # the last blessed one is B
  assert baseline.last_pushed_model_dir(s.store) == '/root/Trainer/model/1/Format-Serving'


def test_nothing_is_the_baseline_before_a_first_push(tmp_path):
  s = _Store(tmp_path / 'metadata.sqlite')
  model = s.artifact(standard_artifacts.Model, '/root/Trainer/model/1')
  s.execution('Trainer', {}, {'model': model})
  push = s.artifact(standard_artifacts.PushedModel, '/serving/1', pushed=0)
  s.execution('Pusher', {'model': model}, {'pushed_model': push})
  strategy = baseline.LatestPushedModelStrategy()
  assert strategy.resolve_artifacts(s.store, {'model': [model], 'pushed_model': [push]}) == {
      'model': [], 'pushed_model': []}
  assert baseline.last_pushed_model_dir(s.store) is None


def test_the_resolver_reads_pushes_from_this_pipelines_pusher_only(tmp_path):
  pipeline = create_pipeline(configs.PipelineConfig(output_root=str(tmp_path),
                                                    reviewed_clips=str(tmp_path / 'reviewed')))
  ir = compiler.Compiler().compile(pipeline)
  node = next(n.pipeline_node for n in ir.nodes
              if n.pipeline_node.node_info.id == _resolver(pipeline).id)
  pushes = [channel for spec in node.inputs.inputs.values() for channel in spec.channels
            if channel.artifact_query.type.name == 'PushedModel']
  assert len(pushes) == 1 and pushes[0].output_key == 'pushed_model'
  nodes = [c.name.field_value.string_value for c in pushes[0].context_queries
           if c.type.name == 'node']
  assert nodes == [f'{configs.PIPELINE_NAME}.{PUSHER}']


def test_vertex_keeps_tfxs_own_strategy_on_the_test_splits_blessings(tmp_path):
  """Vertex's compiler knows only TFX's strategies: the last model the test split's Evaluator
  blessed (not the ReviewedEvaluator's blessings)."""
  node = _resolver(create_pipeline(configs.PipelineConfig(output_root=str(tmp_path)),
                                   baseline=LAST_BLESSED))
  assert node.exec_properties[resolver.RESOLVER_STRATEGY_CLASS] is (
      tfx.dsl.experimental.LatestBlessedModelStrategy)
  blessing = node.raw_inputs['model_blessing']
  assert (blessing.producer_component_id, blessing.output_key) == ('Evaluator', 'blessing')
