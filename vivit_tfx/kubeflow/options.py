"""Kubeflow deployment options: kept free of TFX imports so `vivit-tfx --help` stays fast."""
from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass
class Deployment:
  """Cluster-side settings: image, Trainer resources and accelerator."""
  image: str
  output: str = 'output/vivit_violence_pipeline.yaml'
  accelerator_type: str = ''    # e.g. NVIDIA_TESLA_T4, NVIDIA_L4, TPU_V3 (KFP accelerator type)
  accelerator_count: int = 0
  trainer_cpu: float = 0.0       # CPU limit of the Trainer pod (0: cluster default)
  trainer_memory_gib: float = 0.0


def beam_args_for(preset: str, extra: str = '') -> str:
  if preset not in BEAM_PRESETS:
    raise ValueError(f'beam preset {preset!r} is not one of {sorted(BEAM_PRESETS)}')
  return ' '.join(a for a in (BEAM_PRESETS[preset], extra) if a)


def add_arguments(parser) -> None:
  g = parser.add_argument_group('Kubeflow deployment')
  g.add_argument('--image', required=True, help='pipeline image built from vivit_tfx/kubeflow/Dockerfile')
  g.add_argument('--pipeline-root', required=True,
                 help='pipeline root URI the pods can reach (gs://, s3://, minio://, a path)')
  g.add_argument('--output', default=Deployment.output, help='PipelineSpec YAML to write')
  g.add_argument('--beam-preset', default='direct', choices=sorted(BEAM_PRESETS),
                 help='Beam runner for StatisticsGen/Transform/Evaluator (see README)')
  g.add_argument('--accelerator-type', default='',
                 help='Trainer accelerator, e.g. NVIDIA_TESLA_T4, NVIDIA_L4, TPU_V3')
  g.add_argument('--accelerator-count', type=int, default=1)
  g.add_argument('--trainer-cpu', type=float, default=0.0)
  g.add_argument('--trainer-memory-gib', type=float, default=0.0)


