"""Compiles the same `create_pipeline` into a Kubeflow Pipelines v2 PipelineSpec (YAML).

Nothing is built or uploaded: user code is referenced by dotted paths
(`vivit_tfx.models.preprocessing.preprocessing_fn`, `vivit_tfx.models.model.run_fn`) that resolve inside the
pipeline image built from `vivit_tfx/kubeflow/Dockerfile`.
"""
from __future__ import annotations

import os
from typing import Tuple

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from vivit_tfx.kubeflow import options
from vivit_tfx.kubeflow.options import Deployment
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline.pipeline import create_pipeline

# Where the Dockerfile puts the project inside the image.
IMAGE_PROJECT_DIR = '/pipeline'
IMAGE_SCHEMA_FILE = f'{IMAGE_PROJECT_DIR}/vivit_tfx/schemas/clip_schema.pbtxt'

def trainer_resources(deployment: Deployment):
  """The Trainer's ResourceSpec (CPU/memory limits and accelerator), or None."""
  spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  if not (deployment.accelerator_type or deployment.trainer_cpu or
          deployment.trainer_memory_gib):
    return None
  resources = spec(cpu_limit=deployment.trainer_cpu, memory_limit=deployment.trainer_memory_gib)
  if deployment.accelerator_type:
    resources.accelerator.CopyFrom(spec.AcceleratorConfig(
        type=deployment.accelerator_type, count=max(1, deployment.accelerator_count)))
  return resources


def kubeflow_config(config: configs.PipelineConfig) -> configs.PipelineConfig:
  """The pipeline config as seen from inside the image (schema path, no local abspaths)."""
  if not config.schema_file and config.num_frames != 8:
    raise ValueError('the image holds the curated schema for 8 frames: pass --schema-file '
                     f'with a schema for {config.num_frames} frames (e.g. from '
                     'schemas.for_num_frames) at a path or URI the pods can read')
  return config.replace(schema_file=config.schema_file or IMAGE_SCHEMA_FILE)


def compile_pipeline(config: configs.PipelineConfig, deployment: Deployment) -> str:
  """Writes the KFP v2 PipelineSpec YAML and returns its path."""
  pipeline = create_pipeline(kubeflow_config(config))
  resources = trainer_resources(deployment)
  if resources is not None:
    trainer = next(c for c in pipeline.components if c.id == 'Trainer')
    trainer.with_platform_config(resources)
  out_dir, name = os.path.split(os.path.abspath(deployment.output))
  if not name.endswith(('.yaml', '.yml')):
    raise ValueError(f'{deployment.output}: the KFP v2 client uploads .yaml/.yml specs')
  os.makedirs(out_dir, exist_ok=True)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          display_name=config.pipeline_name, default_image=deployment.image),
      output_dir=out_dir, output_filename=name)
  runner.run(pipeline)
  return os.path.join(out_dir, name)


def from_args(args) -> Tuple[configs.PipelineConfig, Deployment]:
  """The pipeline config and the deployment from `vivit-tfx compile` arguments."""
  config = configs.from_args(args).replace(
      pipeline_root_uri=args.pipeline_root,
      beam_args=options.beam_args_for(args.beam_preset,
                              '' if args.beam_args == configs.PipelineConfig.beam_args
                              else args.beam_args))
  deployment = Deployment(image=args.image, output=args.output,
                          accelerator_type=args.accelerator_type,
                          accelerator_count=args.accelerator_count if args.accelerator_type
                          else 0, trainer_cpu=args.trainer_cpu,
                          trainer_memory_gib=args.trainer_memory_gib)
  return config, deployment


