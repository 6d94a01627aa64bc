"""ML Metadata queries shared by the run summary, `lineage` and `predict` (no folder guessing)."""
from __future__ import annotations

import dataclasses
import os
import sqlite3
from typing import Dict, List, Optional

from google.protobuf import json_format
import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata as tfx_metadata


class NotAStoreError(ValueError):
  """The file is not an ML Metadata store; it was not modified."""


def connection_config(sqlite_path: str = '', mysql_host: str = '', mysql_port: int = 3306,
                      mysql_database: str = '', mysql_user: str = '', mysql_password: str = '',
                      grpc_host: str = '', grpc_port: int = 8080, read_only: bool = False):
  """A connection to the store: sqlite (local runs), MySQL, or the KFP metadata gRPC service.
  With `read_only`, a sqlite store is checked to be ML Metadata's and opened READONLY."""
  if grpc_host:
    return metadata_store_pb2.MetadataStoreClientConfig(host=grpc_host, port=grpc_port)
  if mysql_host:
    return tfx_metadata.mysql_metadata_connection_config(
        host=mysql_host, port=mysql_port, database=mysql_database, username=mysql_user,
        password=mysql_password)
  if not read_only:
    return tfx_metadata.sqlite_metadata_connection_config(sqlite_path)
  check_sqlite_store(sqlite_path)
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = sqlite_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return config


# Tables every ML Metadata sqlite store has (ml-metadata's schema, any version).
_MLMD_TABLES = {'Artifact', 'Execution', 'Context', 'Event', 'Type', 'MLMDEnv'}


def check_sqlite_store(path: str) -> None:
  """Raises NotAStoreError (one line) unless `path` is an ML Metadata sqlite store; opens the
  file read-only, so another application's database is never modified."""
  if not os.path.isfile(path):
    raise NotAStoreError(f'{path}: no metadata store (run `vivit-tfx run` first; `lineage` and '
                         '`report` take --output-root DIR or --metadata PATH of another)')
  try:
    with open(path, 'rb') as f:
      if f.read(16) != b'SQLite format 3\x00':
        raise NotAStoreError(f'{path}: not an ML Metadata store (not an sqlite database); '
                             'left untouched')
    connection = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
      tables = {row[0] for row in connection.execute(
          "SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
      connection.close()
  except (OSError, sqlite3.Error) as e:
    raise NotAStoreError(f'{path}: cannot be read as an ML Metadata store ({e}); '
                         'left untouched') from None
  if not _MLMD_TABLES <= tables:
    raise NotAStoreError(f'{path}: an sqlite database but not an ML Metadata store (no '
                         f'{", ".join(sorted(_MLMD_TABLES - tables))} tables); left untouched')


def open_store(config) -> mlmd.MetadataStore:
  return mlmd.MetadataStore(config)


def open_sqlite(path: str, read_only: bool = False) -> mlmd.MetadataStore:
  """The sqlite store of a local (LocalDagRunner) run; inspection tools pass `read_only`."""
  return open_store(connection_config(sqlite_path=path, read_only=read_only))


# Two store layouts. Local TFX (LocalDagRunner): context types `pipeline`, `pipeline_run`,
# `node` (tfx@v1.16.0 dsl/compiler/constants.py) and artifact types named `PushedModel`, ….
# Kubeflow Pipelines v2 (its driver and launcher write MLMD): contexts `system.Pipeline` and
# `system.PipelineRun` (the run a child of the pipeline), executions `system.ContainerExecution`
# with custom properties `task_name` and `inputs` (a struct of the task's input parameters,
# i.e. TFX's exec properties) (kubeflow/pipelines@2.1.0 backend/src/v2/metadata/client.go
# `GetPipeline`, `CreateExecution`); artifact types are the schema titles, `tfx.PushedModel`
# (tfx@v1.16.0 orchestration/kubeflow/v2/compiler_utils.py `get_artifact_title`), and TFX
# properties arrive as custom properties, numbers as doubles (backend/src/v2/metadata/
# converter.go `toMLMDArtifact`; tfx kubeflow/v2/container/kubeflow_v2_entrypoint_utils.py).
PIPELINE_CONTEXT_TYPES = ('pipeline', 'system.Pipeline')
RUN_CONTEXT_TYPES = ('pipeline_run', 'system.PipelineRun')
KFP_TYPE_PREFIX = 'tfx.'


def type_names(name: str) -> List[str]:
  """An artifact type's names in either layout: ['PushedModel', 'tfx.PushedModel']."""
  short = short_type(name)
  return [short, KFP_TYPE_PREFIX + short]


def short_type(name: str) -> str:
  """'tfx.PushedModel' → 'PushedModel' (the local name); other names unchanged."""
  return name[len(KFP_TYPE_PREFIX):] if name.startswith(KFP_TYPE_PREFIX) else name


def _context_type_ids(store, names) -> Dict[int, str]:
  found = {}
  for name in names:
    try:
      found[store.get_context_type(name).id] = name
    except mlmd.errors.NotFoundError:
      pass
  return found


def property_value(node, name: str):
  """A (custom) property of an artifact/execution/context as a plain Python value."""
  for props in (node.properties, node.custom_properties):
    if name in props:
      value = props[name]
      kind = value.WhichOneof('value')
      if kind == 'struct_value':
        return json_format.MessageToDict(value.struct_value)
      return getattr(value, kind) if kind else None
  return None


def execution_property(execution, name: str):
  """An exec property of a TFX component: an execution property locally, an input
  parameter (the `inputs` struct) on Kubeflow."""
  value = property_value(execution, name)
  if value is None:
    value = (property_value(execution, 'inputs') or {}).get(name)
  return value


def runs(store: mlmd.MetadataStore, pipeline_name: str) -> List[metadata_store_pb2.Context]:
  """Pipeline runs (`pipeline_run`, or KFP's `system.PipelineRun`) of a pipeline, oldest first."""
  contexts = [c for t in RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(t)]
  children = set()
  for kind in PIPELINE_CONTEXT_TYPES:
    pipeline = store.get_context_by_type_and_name(kind, pipeline_name)
    if pipeline is not None:
      children |= {c.id for c in store.get_children_contexts_by_context(pipeline.id)}
  contexts = [c for c in contexts if c.id in children] or contexts
  return sorted(contexts, key=lambda c: (c.create_time_since_epoch, c.id))


def find_run(store: mlmd.MetadataStore, pipeline_name: str, run_id: Optional[str] = None,
             where: str = 'this metadata store') -> metadata_store_pb2.Context:
  """The run named `run_id` of a pipeline (None: its latest); ValueError (one line) when the
  store holds no run of it, or none of that name."""
  found = runs(store, pipeline_name)
  if not found:
    raise ValueError(f'no run of {pipeline_name} in {where}')
  run = next((r for r in found if r.name == run_id), None) if run_id else found[-1]
  if run is None:
    raise ValueError(f'unknown run {run_id!r}; see `vivit-tfx lineage --runs`')
  return run


def run_names_by_execution(store, execution_ids: List[int]) -> Dict[int, str]:
  """The run (context name) of each execution, in either layout."""
  run_types = _context_type_ids(store, RUN_CONTEXT_TYPES)
  out = {}
  for ex_id in execution_ids:
    for c in store.get_contexts_by_execution(ex_id):
      if c.type_id in run_types:
        out[ex_id] = c.name
  return out


@dataclasses.dataclass
class ExecutionInfo:
  execution: metadata_store_pb2.Execution
  type_name: str
  node_id: str
  inputs: Dict[str, List[metadata_store_pb2.Artifact]]
  outputs: Dict[str, List[metadata_store_pb2.Artifact]]

  @property
  def state(self) -> str:
    return metadata_store_pb2.Execution.State.Name(self.execution.last_known_state)


def _type_names(store, type_ids, getter) -> Dict[int, str]:
  return {t.id: t.name for t in getter(list(set(type_ids)))} if type_ids else {}


def executions_of_run(store: mlmd.MetadataStore,
                      run: metadata_store_pb2.Context) -> List[ExecutionInfo]:
  """Every execution of a run with its input and output artifacts, by channel key."""
  executions = store.get_executions_by_context(run.id)
  return describe_executions(store, executions)


def executions_by_node(store: mlmd.MetadataStore,
                       run: metadata_store_pb2.Context) -> Dict[str, ExecutionInfo]:
  """A run's executions by pipeline node ('Trainer', …; the execution type where none)."""
  return {node_id(store, i.execution) or i.type_name: i for i in executions_of_run(store, run)}


def describe_executions(store, executions) -> List[ExecutionInfo]:
  if not executions:
    return []
  types = _type_names(store, [e.type_id for e in executions], store.get_execution_types_by_id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(list({ev.artifact_id
                                                                for ev in events}))}
  out = []
  for e in sorted(executions, key=lambda x: (x.create_time_since_epoch, x.id)):
    info = ExecutionInfo(e, types.get(e.type_id, '?'),
                         str(property_value(e, 'component_id') or
                             property_value(e, 'task_name') or e.name or ''), {}, {})
    for ev in events:
      if ev.execution_id != e.id or ev.artifact_id not in artifacts:
        continue
      key = ev.path.steps[0].key if ev.path.steps else ''
      side = info.inputs if ev.type in (metadata_store_pb2.Event.INPUT,
                                        metadata_store_pb2.Event.DECLARED_INPUT) else (
                                            info.outputs)
      side.setdefault(key, []).append(artifacts[ev.artifact_id])
    out.append(info)
  return out


def node_id(store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
  """The pipeline node an execution belongs to ('Trainer', 'Evaluator', …): the `node`
  context locally, the `task_name` custom property on Kubeflow."""
  for c in store.get_contexts_by_execution(execution.id):
    if store.get_context_types_by_id([c.type_id])[0].name == 'node':
      return c.name.split('.', 1)[-1]
  return str(property_value(execution, 'task_name') or '')



def latest_artifact(store: mlmd.MetadataStore, type_name: str,
                    where=lambda a: True) -> Optional[metadata_store_pb2.Artifact]:
  """The newest artifact of a type (local or `tfx.`-prefixed name) that passes `where`."""
  candidates = [a for name in type_names(type_name)
                for a in store.get_artifacts_by_type(name) if where(a)]
  return max(candidates, key=lambda a: (a.create_time_since_epoch, a.id), default=None)
