"""`vivit-tfx lineage`: which data, schema, transform and run produced the pushed model.

Everything comes from ML Metadata's own lineage query (`get_lineage_subgraph`, upstream from
the PushedModel), not from the folder layout, so it works the same on a Kubeflow store.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from typing import Dict, List, Optional, Tuple

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2

from vivit_tfx import extras
from vivit_tfx.audit import metadata, tfma_results
from vivit_tfx.data import features

# What `lineage --compare` compares between two runs.
COMPARED = ('inputs', 'hyperparameters', 'evaluation', 'metrics')


def _time(ms: int) -> str:
  return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
      '%Y-%m-%d %H:%M:%S UTC') if ms else '-'


@dataclasses.dataclass
class Node:
  """An artifact or an execution of the lineage graph."""
  key: str  # 'a12' or 'e7'
  kind: str  # 'artifact' | 'execution'
  id: int
  type: str
  label: str  # node id for executions, URI for artifacts
  state: str
  run_id: str
  created: str
  properties: Dict[str, object]


@dataclasses.dataclass
class Lineage:
  root: str
  nodes: Dict[str, Node]
  edges: List[Tuple[str, str, str]]  # (source key, target key, channel key), data flow order

  def parents(self, key: str) -> List[Tuple[str, str]]:
    return [(s, k) for s, t, k in self.edges if t == key]

  def to_json(self) -> dict:
    return {'root': self.root, 'nodes': [dataclasses.asdict(n) for n in self.nodes.values()],
            'edges': [{'from': s, 'to': t, 'key': k} for s, t, k in self.edges]}


def pushed_model(store, artifact_id: Optional[int] = None):
  """The PushedModel to trace: the given id, else the newest that was actually pushed."""
  if artifact_id is not None:
    found = store.get_artifacts_by_id([artifact_id])
    if not found:
      raise ValueError(f'no artifact with id {artifact_id}')
    return found[0]
  model = metadata.latest_artifact(store, 'PushedModel',
                                   lambda a: bool(metadata.property_value(a, 'pushed')))
  if model is None:
    raise ValueError(f'no pushed model in this metadata store: {_why_nothing_pushed(store)}')
  return model


def _why_nothing_pushed(store) -> str:
  """What became of the newest evaluated model: its run, not blessed, and what to run next."""
  blessing = metadata.latest_artifact(store, 'ModelBlessing')
  origin = producer(store, blessing) if blessing is not None else None
  if origin is None:
    return 'no run has evaluated a model yet (`vivit-tfx lineage --runs` lists the runs)'
  run = metadata.run_names_by_execution(store, [origin.id]).get(origin.id, '?')
  if metadata.property_value(blessing, 'blessed'):
    return (f'the model of run {run} was blessed but not pushed (`vivit-tfx lineage --runs` '
            "shows the Pusher's state)")
  unpushed = metadata.latest_artifact(store, 'PushedModel')
  trace = (f'; `vivit-tfx lineage --artifact-id {unpushed.id}` traces its model'
           if unpushed is not None else '')
  return (f'the model of run {run} was not blessed, so nothing was pushed; `vivit-tfx report '
          f'--run-id {run}` says which checks failed{trace}')


def unlabeled_footage(execution) -> str:
  """The unlabelled footage a (pre-)training execution read: its ingested clips, how many
  videos and the manifest's hash ('' when it read none)."""
  try:
    custom = json.loads(metadata.execution_property(execution, 'custom_config') or '{}')
  except (TypeError, ValueError):
    return ''
  footage = (custom.get('unlabeled') if isinstance(custom, dict) else None) or {}
  if not isinstance(footage, dict) or not footage.get('pattern'):
    return ''
  return (f"{footage['pattern']} ({footage.get('videos', '?')} videos, manifest sha256 "
          f"{footage.get('manifest_sha256', '?')})")


def upstream(store, artifact) -> Lineage:
  """The upstream lineage graph of an artifact, from MLMD's lineage subgraph query."""
  options = metadata_store_pb2.LineageSubgraphQueryOptions(
      starting_artifacts=metadata_store_pb2.LineageSubgraphQueryOptions.StartingNodes(
          filter_query=f'id = {artifact.id}'),
      max_num_hops=40,
      direction=metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM)
  graph = store.get_lineage_subgraph(options)
  artifact_types = {t.id: t.name for t in graph.artifact_types} or {
      t.id: t.name for t in store.get_artifact_types()}
  execution_types = {t.id: t.name for t in graph.execution_types} or {
      t.id: t.name for t in store.get_execution_types()}
  runs = metadata.run_names_by_execution(store, [e.id for e in graph.executions])
  nodes = {}
  for e in graph.executions:
    nodes[f'e{e.id}'] = Node(
        f'e{e.id}', 'execution', e.id, execution_types.get(e.type_id, '?'),
        metadata.node_id(store, e), metadata_store_pb2.Execution.State.Name(e.last_known_state),
        runs.get(e.id, ''), _time(e.create_time_since_epoch),
        {'unlabeled_footage': footage} if (footage := unlabeled_footage(e)) else {})
  producer = {}
  edges = []
  for ev in graph.events:
    a, x = f'a{ev.artifact_id}', f'e{ev.execution_id}'
    key = ev.path.steps[0].key if ev.path.steps else ''
    if ev.type == metadata_store_pb2.Event.OUTPUT:
      edges.append((x, a, key))
      producer[ev.artifact_id] = ev.execution_id
    elif ev.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT):
      edges.append((a, x, key))
  for art in graph.artifacts:
    props = {k: metadata.property_value(art, k) for k in
             ('pushed', 'pushed_version', 'blessed', 'span', 'split_names')
             if metadata.property_value(art, k) is not None}
    nodes[f'a{art.id}'] = Node(
        f'a{art.id}', 'artifact', art.id,
        metadata.short_type(artifact_types.get(art.type_id, '?')), art.uri,
        metadata_store_pb2.Artifact.State.Name(art.state),
        runs.get(producer.get(art.id, -1), ''), _time(art.create_time_since_epoch), props)
  edges = [e for e in edges if e[0] in nodes and e[1] in nodes]
  return Lineage(f'a{artifact.id}', nodes, sorted(set(edges)))


def chain_text(lineage: Lineage) -> str:
  """The upstream chain as an indented tree, root (the pushed model) first."""
  lines, seen = [], set()

  def describe(node: Node) -> str:
    if node.kind == 'artifact':
      props = ''.join(f', {k}={v}' for k, v in node.properties.items() if k != 'split_names')
      return f'{node.type} #{node.id} {node.label} ({node.created}{props})'
    kind = node.type.rsplit('.', 1)[-1]
    name = node.label if node.label in ('', kind) else f'{node.label} ({kind})'
    props = ''.join(f', {k.replace("_", " ")} {v}' for k, v in node.properties.items())
    return (f'{name or kind} execution #{node.id} '
            f'{node.state}, run {node.run_id or "-"}, {node.created}{props}')

  def walk(key: str, depth: int, via: str = ''):
    node = lineage.nodes[key]
    prefix = '  ' * depth + ('← ' if depth else '')
    channel = f'{via}: ' if via else ''
    if key in seen:
      lines.append(f'{prefix}{channel}{node.type} #{node.id} (shown above)')
      return
    seen.add(key)
    lines.append(f'{prefix}{channel}{describe(node)}')
    for parent, key_name in sorted(lineage.parents(key)):
      walk(parent, depth + 1, key_name if lineage.nodes[parent].kind == 'artifact' else '')

  walk(lineage.root, 0)
  return '\n'.join(lines)


def chain_types(lineage: Lineage) -> List[str]:
  """Artifact types along the graph (for checks): every artifact type reachable upstream."""
  return sorted({n.type for n in lineage.nodes.values() if n.kind == 'artifact'})


def to_dot(lineage: Lineage) -> str:
  out = ['digraph lineage {', '  rankdir=BT;', '  node [fontname="Helvetica", fontsize=10];']
  for n in lineage.nodes.values():
    if n.kind == 'artifact':
      out.append(f'  {n.key} [shape=box, style=filled, fillcolor="#dbe9f6", '
                 f'label="{n.type} #{n.id}\\n{_short(n.label)}"];')
    else:
      out.append(f'  {n.key} [shape=ellipse, style=filled, fillcolor="#fde2c8", '
                 f'label="{n.label or n.type} #{n.id}\\n{n.state}"];')
  for s, t, k in lineage.edges:
    out.append(f'  {s} -> {t} [label="{k}", fontsize=8];')
  out.append('}')
  return '\n'.join(out)


def _short(uri: str, keep: int = 2) -> str:
  parts = [p for p in uri.split('/') if p]
  return '…/' + '/'.join(parts[-keep:]) if len(parts) > keep else uri


def _depths(lineage: Lineage) -> Dict[str, int]:
  """Layer of each node: the longest path from it down to the root (the root is layer 0)."""
  depth = {lineage.root: 0}
  changed = True
  while changed:
    changed = False
    for s, t, _ in lineage.edges:
      if t in depth and depth.get(s, -1) < depth[t] + 1 and depth[t] + 1 <= len(lineage.nodes):
        depth[s] = depth[t] + 1
        changed = True
  return depth


def to_png(lineage: Lineage, path: str) -> str:
  """Draws the graph with matplotlib: data flows bottom→top into the pushed model."""
  plt = extras.pyplot()
  depth = _depths(lineage)
  layers: Dict[int, List[str]] = {}
  for key in sorted(depth, key=lambda k: lineage.nodes[k].id):
    layers.setdefault(depth[key], []).append(key)
  height = max(layers) + 1
  width = max(len(v) for v in layers.values())
  fig, ax = plt.subplots(figsize=(max(8, 3.2 * width), max(6, 1.1 * height)))
  pos = {}
  for d, keys in layers.items():
    for i, key in enumerate(keys):
      pos[key] = ((i + 0.5) / len(keys), 1 - (d + 0.5) / height)
  for s, t, _ in lineage.edges:
    if s in pos and t in pos:
      span = depth[s] - depth[t]  # edges that skip layers curve round the nodes between
      ax.annotate('', xy=pos[t], xytext=pos[s],
                  arrowprops=dict(arrowstyle='->', color='#777777', lw=0.8, shrinkA=14,
                                  shrinkB=14, connectionstyle=f'arc3,rad={0.12 * (span > 1) * min(span, 4)}'))
  for key, (x, y) in pos.items():
    n = lineage.nodes[key]
    if n.kind == 'artifact':
      text, style = f'{n.type} #{n.id}', dict(boxstyle='round', fc='#dbe9f6', ec='#4a7fb5')
    else:
      text = f'{n.label or n.type.rsplit(".", 1)[-1]} #{n.id}\n{n.state}'
      style = dict(boxstyle='round4', fc='#fde2c8', ec='#c8702a')
    ax.text(x, y, text, ha='center', va='center', fontsize=8, bbox=style)
  ax.set_axis_off()
  ax.set_title(f'Lineage of {lineage.nodes[lineage.root].type} '
               f'#{lineage.nodes[lineage.root].id} (blue: artifacts, orange: executions)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def runs_text(store, pipeline_name: str) -> str:
  lines = []
  for run in metadata.runs(store, pipeline_name):
    infos = metadata.executions_of_run(store, run)
    lines.append(f'run {run.name} ({len(infos)} executions)')
    for info in infos:
      lines.append(f'  {metadata.node_id(store, info.execution) or info.type_name:32s} '
                   f'#{info.execution.id:<4d} {info.state}')
  return '\n'.join(lines) or f'no runs of {pipeline_name}'


def producer(store, artifact) -> Optional[metadata_store_pb2.Execution]:
  """The execution that first produced an artifact (a cached execution only reuses it)."""
  for ev in store.get_events_by_artifact_ids([artifact.id]):
    if ev.type == metadata_store_pb2.Event.OUTPUT:
      found = store.get_executions_by_id([ev.execution_id])
      if found and found[0].last_known_state == metadata_store_pb2.Execution.COMPLETE:
        return found[0]
  return None


def run_facts(store, run) -> dict:
  """What identifies a run: the data and artifacts its Trainer used, hyperparameters, metrics.

  Read from the executions that produced the artifacts, so cached runs report them too.
  """
  facts = {'inputs': {}, 'hyperparameters': {}, 'evaluation': {}, 'metrics': {},
           'blessed': None}
  for info in metadata.executions_of_run(store, run):
    node = metadata.node_id(store, info.execution)
    for artifact in info.outputs.get('model', [])[:1] if node.endswith('Trainer') else []:
      footage = unlabeled_footage(producer(store, artifact) or info.execution)
      if footage:  # the PretrainTrainer's, or the self-training Trainer's
        facts['inputs'][f'{node}: unlabeled_footage'] = footage
    if node == 'Trainer':
      for key, artifacts in sorted(info.inputs.items()):
        facts['inputs'][key] = ', '.join(a.uri for a in artifacts)
      for artifact in info.inputs.get('examples', [])[:1]:
        origin = producer(store, artifact)
        if origin is not None:
          facts['inputs']['input_fingerprint'] = metadata.execution_property(
              origin, 'input_fingerprint')
      for artifact in info.outputs.get('model', [])[:1]:
        trainer = producer(store, artifact) or info.execution
        custom = json.loads(metadata.execution_property(trainer, 'custom_config') or '{}')
        facts['hyperparameters'] = {**custom.get('vivit', {}),
                                    **{k: v for k, v in custom.items() if k != 'vivit'}}
        for key in ('train_args', 'eval_args'):
          facts['hyperparameters'][key] = metadata.execution_property(trainer, key)
    for artifact in info.outputs.get('evaluation', []) if node == 'Evaluator' else []:
      facts['metrics'] = tfma_results.overall_metrics(artifact.uri)
      facts['evaluation'] = blessing_settings(
          metadata.execution_property(producer(store, artifact) or info.execution,
                                      'eval_config'))
    for artifact in info.outputs.get('blessing', []):  # blessed by every Evaluator
      facts['blessed'] = (facts['blessed'] is not False) and bool(
          metadata.property_value(artifact, 'blessed'))
  classes = (facts['hyperparameters'].get('clip') or {}).get('class_names') or []
  facts['evaluation'] = {_class_named(k, classes): v for k, v in facts['evaluation'].items()}
  return facts


def _class_named(setting: str, classes: List[str]) -> str:
  """'min_test_examples (label=1)' → 'min_test_examples (class Violence)' (label order)."""
  match = re.fullmatch(r'(.*)\(label=(\d+)\)', setting)
  if not match or int(match.group(2)) >= len(classes):
    return setting
  return f'{match.group(1)}(class {classes[int(match.group(2))]})'


def blessing_settings(eval_config_json: Optional[str]) -> Dict[str, float]:
  """The bounds an Evaluator blessed by, named by the `run` options that set them:
  {'accuracy_threshold': 0.8, 'max_accuracy_drop': 0.0, 'min_test_examples (label=1)': 5}."""
  # local: importing TFMA takes ~5 s, paid only when a run's blessing settings are read.
  from tensorflow_model_analysis.proto import config_pb2  # pylint: disable=g-import-not-at-top
  try:
    config = json_format.Parse(eval_config_json or '{}', config_pb2.EvalConfig(),
                               ignore_unknown_fields=True)
  except json_format.ParseError:
    return {}
  out = {}
  for metric in (m for spec in config.metrics_specs for m in spec.metrics):
    # The accuracy bounds: the metric's own threshold (runs before slices by source), or the
    # per-slice threshold whose slices include the whole test split.
    overall = [metric.threshold] + [t.threshold for t in metric.per_slice_thresholds
                                    if any(not s.ByteSize() for s in t.slicing_specs)]
    for threshold in overall:
      if threshold.value_threshold.HasField('lower_bound'):
        out['accuracy_threshold'] = threshold.value_threshold.lower_bound.value
      if threshold.change_threshold.HasField('absolute'):
        out['max_accuracy_drop'] = round(-threshold.change_threshold.absolute.value, 6)
    for per_slice in metric.per_slice_thresholds:
      bound = per_slice.threshold.value_threshold
      for spec in per_slice.slicing_specs:
        if not bound.HasField('lower_bound') or not spec.ByteSize():
          continue
        if spec.feature_values:
          where = ', '.join(f'{k}={v}' for k, v in sorted(spec.feature_values.items()))
          out[f'min_test_examples ({where})'] = math.ceil(bound.lower_bound.value)
        elif set(spec.feature_keys) & set(features.SLICE_FEATURES):
          out['min_slice_accuracy'] = bound.lower_bound.value
  return out


def compare_runs(store, pipeline_name: str, run_a: str, run_b: str) -> dict:
  """Which inputs, hyperparameters, blessing settings and metrics differ between two runs."""
  by_name = {r.name: r for r in metadata.runs(store, pipeline_name)}
  missing = [r for r in (run_a, run_b) if r not in by_name]
  if missing:
    raise ValueError(f'unknown run id(s) {missing}; see `vivit-tfx lineage --runs`')
  a, b = run_facts(store, by_name[run_a]), run_facts(store, by_name[run_b])
  diff = {}
  for section in COMPARED:
    keys = sorted(set(a[section]) | set(b[section]))
    diff[section] = {k: [a[section].get(k), b[section].get(k)] for k in keys
                     if a[section].get(k) != b[section].get(k)}
  diff['blessed'] = [a['blessed'], b['blessed']]
  return diff
