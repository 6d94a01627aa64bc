"""Kubeflow Pipelines v2: compile `create_pipeline` with KubeflowV2DagRunner (TFX 1.16)."""
