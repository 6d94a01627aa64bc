"""Kubeflow deployment options: kept free of TFX imports so `vivit-tfx --help` stays fast."""
from __future__ import annotations

import dataclasses
import re
from typing import Dict, Tuple

# Beam runners for StatisticsGen/Transform/Evaluator; <…> are values to fill in.
BEAM_PRESETS = {
    'direct': '--direct_running_mode=multi_processing --direct_num_workers=0',
    'dataflow': ('--runner=DataflowRunner --project=<gcp-project> --region=<region> '
                 '--temp_location=gs://<bucket>/beam-tmp '
                 '--sdk_container_image=<the pipeline image> --experiments=use_runner_v2'),
    'flink': ('--runner=FlinkRunner --flink_master=<flink-jobmanager:8081> '
              '--environment_type=EXTERNAL --environment_config=localhost:50000 '
              '--flink_submit_uber_jar'),
    'spark': ('--runner=PortableRunner --job_endpoint=<spark-job-server:8099> '
              '--environment_type=EXTERNAL --environment_config=localhost:50000'),
}


TARGETS = ('kfp', 'vertex')  # open-source Kubeflow Pipelines, Vertex AI Pipelines

# Open-source KFP's driver puts the accelerator type verbatim into the container's resource
# limits (kubeflow/pipelines backend/src/v2/driver/driver.go, tags 2.0.0-2.5.0:
# `res.Limits[k8score.ResourceName(accelerator.GetType())]`), so there it must be a Kubernetes
# extended resource; the GPU model is picked by a node selector (GKE's label below).
GPU_RESOURCE = 'nvidia.com/gpu'
GKE_ACCELERATOR_LABEL = 'cloud.google.com/gke-accelerator'
_VERTEX_GPU = re.compile(r'^NVIDIA_[A-Z0-9_]+$')  # NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_A100_80GB


@dataclasses.dataclass
class Deployment:
  """Cluster-side settings: target, image, accelerator, and each heavy component's
  resources (`component_resources`)."""
  image: str
  output: str = 'output/vivit_violence_pipeline.yaml'
  overwrite: bool = False       # replace an --output that is not a compiled spec
  target: str = 'kfp'            # kfp (open-source Kubeflow Pipelines) | vertex
  accelerator_type: str = ''    # Vertex name (NVIDIA_TESLA_T4) or, for kfp, a Kubernetes
                                 # resource name (nvidia.com/gpu)
  accelerator_count: int = 0
  node_selector: Dict[str, str] = dataclasses.field(default_factory=dict)  # kfp only
  trainer_cpu: float = 0.0       # CPU limit of the Trainer pod (0: cluster default)
  trainer_memory_gib: float = 0.0
  # The Evaluator runs the candidate and the baseline over every test video (K views each):
  # by default it gets one of the Trainer's accelerators and the Trainer's memory.
  evaluator_accelerator_count: int = -1  # -1: one when --accelerator-type is given
  evaluator_cpu: float = 0.0
  evaluator_memory_gib: float = -1.0     # -1: the Trainer's
  transform_accelerator_count: int = 0   # Transform decodes JPEGs on Beam: CPU by default
  transform_cpu: float = 0.0
  transform_memory_gib: float = 0.0


@dataclasses.dataclass(frozen=True)
class Resources:
  """One pod's limits: CPU, memory, and how many of the deployment's accelerator."""
  cpu: float = 0.0
  memory_gib: float = 0.0
  accelerators: int = 0


def component_resources(deployment: Deployment) -> Dict[str, Resources]:
  """The limits of each heavy component's pod (resolved defaults; see Deployment)."""
  has_accelerator = bool(deployment.accelerator_type)
  evaluator_accelerators = (deployment.evaluator_accelerator_count
                            if deployment.evaluator_accelerator_count >= 0 else 1)
  evaluator_memory = (deployment.evaluator_memory_gib if deployment.evaluator_memory_gib >= 0
                      else deployment.trainer_memory_gib)
  trainer = Resources(deployment.trainer_cpu, deployment.trainer_memory_gib,
                      max(1, deployment.accelerator_count) * has_accelerator)
  return {
      'Transform': Resources(deployment.transform_cpu, deployment.transform_memory_gib,
                             deployment.transform_accelerator_count * has_accelerator),
      'PretrainTrainer': trainer,  # the same encoder and batch as fine-tuning (--pretrain)
      'Trainer': trainer,
      'Evaluator': Resources(deployment.evaluator_cpu, evaluator_memory,
                             evaluator_accelerators * has_accelerator),
  }


def trainer_accelerator(deployment: Deployment) -> Tuple[str, Dict[str, str]]:
  """(accelerator type for the Trainer's ResourceSpec, its node selector labels).

  vertex: Vertex names as given (NVIDIA_TESLA_T4, TPU_V3). kfp: a Kubernetes resource name;
  a Vertex GPU name is mapped to `nvidia.com/gpu` plus the GKE node selector
  `cloud.google.com/gke-accelerator: nvidia-tesla-t4`; `--node-selector` labels win.
  """
  kind = deployment.accelerator_type
  if deployment.target not in TARGETS:
    raise ValueError(f'target {deployment.target!r} is not one of {list(TARGETS)}')
  if deployment.target == 'vertex':
    if '/' in kind:
      raise ValueError(f'--target vertex takes Vertex accelerator names such as '
                       f'NVIDIA_TESLA_T4, not the Kubernetes resource {kind!r}')
    if deployment.node_selector:
      raise ValueError('--node-selector applies to --target kfp only (Vertex picks machines '
                       'by accelerator name)')
    return kind, {}
  labels: Dict[str, str] = {}
  if _VERTEX_GPU.match(kind):
    kind, labels = GPU_RESOURCE, {GKE_ACCELERATOR_LABEL: kind.lower().replace('_', '-')}
  elif kind and '/' not in kind:
    raise ValueError(f'--target kfp needs a Kubernetes resource name for --accelerator-type '
                     f'(e.g. {GPU_RESOURCE}, google.com/tpu) or a Vertex GPU name '
                     f'(NVIDIA_TESLA_T4), not {kind!r}')
  return kind, {**labels, **deployment.node_selector}


# GPUs without bfloat16 units (compute capability below 8.0), as named in Vertex/GKE names.
NO_BFLOAT16_GPUS = ('T4', 'V100', 'P100', 'P4', 'K80')


def precision_note(deployment: Deployment, precision: str) -> str:
  """A line for `compile` when the Trainer's GPU (by accelerator name or node selector) has
  no bfloat16: the Trainer then trains a mixed_bfloat16 preset in mixed_float16 with loss
  scaling (models/trainer/training.py `precision_for`); '' otherwise."""
  names = [deployment.accelerator_type, *deployment.node_selector.values()]
  words = {w for n in names for w in re.split(r'[^A-Z0-9]+', n.upper())}
  gpu = next((g for g in NO_BFLOAT16_GPUS if g in words), '')
  if precision != 'mixed_bfloat16' or not gpu:
    return ''
  return (f'{gpu} GPUs have no bfloat16: the Trainer will train this mixed_bfloat16 model in '
          'mixed_float16 with dynamic loss scaling (an L4, A100 or H100 keeps bfloat16)')


def parse_node_selector(items) -> Dict[str, str]:
  """['key=value', …] from `--node-selector` into a dict."""
  out = {}
  for item in items or []:
    key, sep, value = item.partition('=')
    if not (sep and key and value):
      raise ValueError(f'--node-selector {item!r}: expected KEY=VALUE')
    out[key] = value
  return out


def beam_args_for(preset: str, extra: str = '') -> str:
  if preset not in BEAM_PRESETS:
    raise ValueError(f'beam preset {preset!r} is not one of {sorted(BEAM_PRESETS)}')
  return ' '.join(a for a in (BEAM_PRESETS[preset], extra) if a)
