"""Compiles the same `create_pipeline` into a Kubeflow Pipelines v2 PipelineSpec (YAML).

Nothing is built or uploaded: user code is referenced by dotted paths
(`vivit_tfx.models.trainer.preprocessing.preprocessing_fn`,
`vivit_tfx.models.trainer.model.run_fn`) that resolve inside the
pipeline image built from `vivit_tfx/kubeflow/Dockerfile`.

Two targets differ in what their backends accept (kubeflow/pipelines at tags 2.0.0-2.5.0):
* kfp (open source): the API server takes schema version 2.1.0 only
  (backend/src/apiserver/template/v2_template.go `NewV2SpecTemplate`), its Argo compiler
  rejects Resolver executors ("resolver executors not implemented",
  backend/src/v2/compiler/argocompiler/dag.go), the driver uses the accelerator type as the
  Kubernetes resource name, and node selectors come from a second YAML document, a
  `PlatformSpec` whose `platforms.kubernetes.deploymentSpec.executors.<executor>` holds a
  `KubernetesExecutorConfig` (kubernetes_platform/proto/kubernetes_executor_config.proto;
  the kfp SDK writes it in sdk/python/kfp/compiler/pipeline_spec_builder.py
  `write_pipeline_spec_to_file`, and `kfp.Client` reads it back in `_extract_pipeline_yaml`).
  TFX's KubeflowV2DagRunner writes only the first document and takes only a ResourceSpec as
  platform config (tfx@v1.16.0 orchestration/kubeflow/v2/kubeflow_v2_dag_runner.py,
  step_builder.py), so the node selector document is appended here.
* vertex: Vertex accelerator names, the Resolver kept, TFX's default schema version.
"""
from __future__ import annotations

import os
from typing import Dict

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from vivit_tfx import schemas
from vivit_tfx.kubeflow import options
from vivit_tfx.kubeflow.options import Deployment
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline.pipeline import LAST_BLESSED, create_pipeline, dataset_classes

# Where vivit_tfx/kubeflow/Dockerfile puts the curated schema inside the image.
IMAGE_SCHEMA_FILE = '/pipeline/schemas/clip_schema.pbtxt'

def resource_spec(resources: options.Resources, accelerator: str):
  """A component's ResourceSpec (CPU/memory limits and accelerator), or None for none."""
  spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  if not (resources.cpu or resources.memory_gib or resources.accelerators):
    return None
  out = spec(cpu_limit=resources.cpu, memory_limit=resources.memory_gib)
  if resources.accelerators and accelerator:
    out.accelerator.CopyFrom(spec.AcceleratorConfig(type=accelerator,
                                                    count=resources.accelerators))
  return out


def platform_spec(node_selectors: Dict[str, Dict[str, str]]) -> dict:
  """The PlatformSpec document that gives executors' pods node selectors (kfp only):
  {executor label: labels}."""
  message = pipeline_spec_pb2.PlatformSpec()
  for executor_label, labels in node_selectors.items():
    config = message.platforms['kubernetes'].deployment_spec.executors[executor_label]
    config.update({'nodeSelector': {'labels': dict(labels)}})
  return json_format.MessageToDict(message)


def _append_platform_spec(path: str, tasks, node_selector: Dict[str, str]) -> None:
  with open(path) as f:
    spec = yaml.safe_load(f)
  labels = {}
  for task in tasks:
    component = spec['root']['dag']['tasks'][task]['componentRef']['name']
    labels[spec['components'][component]['executorLabel']] = node_selector
  with open(path, 'a') as f:
    f.write('---\n')
    yaml.safe_dump(platform_spec(labels), f, sort_keys=True)


def kubeflow_config(config: configs.PipelineConfig) -> configs.PipelineConfig:
  """The pipeline config as seen from inside the image (schema path, no local abspaths)."""
  config = config.resolve()
  image_schema = schemas.load()
  slots, curated = config.clip_config().stored_frames, schemas.frame_slots(image_schema)
  if not config.schema_file and slots != curated:
    raise ValueError(f'the image holds the curated schema for {curated} frame slots per record '
                     f'(N); these settings store {slots}: pass --schema-file with a schema for '
                     f'{slots} slots (schemas.for_frame_slots) at a path or URI the pods can read')
  classes = dataset_classes(config)
  if not config.schema_file and len(classes) != schemas.num_classes(image_schema):
    raise ValueError(f'the image\'s schema allows {schemas.num_classes(image_schema)} classes; '
                     f'this dataset has {len(classes)} ({", ".join(classes)}): pass '
                     f'--schema-file with a schema for {len(classes)} classes '
                     '(schemas.for_clips) at a path or URI the pods can read')
  return config.replace(schema_file=config.schema_file or IMAGE_SCHEMA_FILE)


def check_output(path: str, overwrite: bool = False) -> None:
  """Raises ValueError (one line) when `path` exists and is not a pipeline spec (a compile's
  earlier output, which recompiling replaces), unless `overwrite`: a file of the user's is
  never replaced without being asked."""
  if overwrite or not os.path.exists(path):
    return
  try:
    with open(path) as f:
      spec = next(yaml.safe_load_all(f), None)
  except (OSError, UnicodeDecodeError, yaml.YAMLError):
    spec = None
  if not (isinstance(spec, dict) and 'pipelineInfo' in spec and 'deploymentSpec' in spec):
    raise ValueError(f'{path}: exists and is not a compiled pipeline spec; it is left as it '
                     'is: choose another --output, or pass --overwrite to replace it')


def compile_pipeline(config: configs.PipelineConfig, deployment: Deployment) -> str:
  """Writes the KFP v2 PipelineSpec YAML (for kfp with its PlatformSpec) and returns its path."""
  accelerator, node_selector = options.trainer_accelerator(deployment)  # validates first
  # Vertex's compiler knows only TFX's own Resolver strategies; open-source KFP runs none.
  pipeline = create_pipeline(kubeflow_config(config), baseline=(
      LAST_BLESSED if deployment.target == 'vertex' else ''))
  resources_of = options.component_resources(deployment)
  on_accelerator = []  # the tasks whose pods need the accelerator's node selector
  for component in pipeline.components:
    resources = resources_of.get(component.id)
    spec = resources and resource_spec(resources, accelerator)
    if spec is not None:
      component.with_platform_config(spec)
      if resources.accelerators:
        on_accelerator.append(component.id)
  out_dir, name = os.path.split(os.path.abspath(deployment.output))
  if not name.endswith(('.yaml', '.yml')):
    raise ValueError(f'{deployment.output}: the KFP v2 client uploads .yaml/.yml specs')
  check_output(deployment.output, deployment.overwrite)
  os.makedirs(out_dir, exist_ok=True)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          display_name=config.pipeline_name, default_image=deployment.image,
          use_pipeline_spec_2_1=deployment.target == 'kfp'),
      output_dir=out_dir, output_filename=name)
  runner.run(pipeline)
  path = os.path.join(out_dir, name)
  if node_selector:  # the pods that train, when none gets an accelerator
    _append_platform_spec(path, on_accelerator or [c.id for c in pipeline.components
                                                   if c.id in ('PretrainTrainer', 'Trainer')],
                          node_selector)
  return path
