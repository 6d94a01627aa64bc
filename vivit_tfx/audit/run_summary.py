"""What `vivit-tfx run` prints at the end, read back from ML Metadata and TFMA: each execution's
state, the test metrics, blessed or not and why, the pushed model and the report's path."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Dict, List, Optional, Protocol

from vivit_tfx import extras, outputs
from vivit_tfx.audit import metadata, model_card, report, tfma_results


class SummarySettings(Protocol):
  """What the summary reads of a run's settings (a `pipeline.configs.PipelineConfig` has it)."""
  pipeline_name: str
  metadata_path: str
  pipeline_root: str
  min_test_examples_per_class: int


@dataclasses.dataclass
class RunSummary:
  run_id: str
  seconds: float
  executions: Dict[str, str]  # node id → state
  test_metrics: Dict[str, float]
  blessed: Optional[bool]
  pushed_model: Optional[str]
  metadata_path: str
  pipeline_root: str
  report: Optional[str] = None
  model_card: Optional[str] = None  # the Markdown card beside the pushed model
  not_blessed_because: List[str] = dataclasses.field(default_factory=list)
  tflite_models: List[str] = dataclasses.field(default_factory=list)  # run --tflite, beside it

  def to_text(self) -> str:
    metrics = ', '.join(f'{k}={"n/a" if math.isnan(v) else f"{v:.4f}"}'
                        for k, v in sorted(self.test_metrics.items())
                        if not k.endswith('_diff') or k == 'binary_accuracy_diff')
    failed = self.not_blessed_because if not self.blessed else []
    lines = [f'run {self.run_id}: {len(self.executions)} executions in {self.seconds:.0f} s',
             '  ' + ', '.join(f'{k}: {v}' for k, v in self.executions.items()),
             f'  test split: {metrics or "(no evaluation)"}',
             f'  blessed: {self.blessed}' + (
                 f', {len(failed)} failed check(s):' if failed else ''),
             *[f'    - {line}' for line in failed],
             f'  pushed model: {self.pushed_model or "(none: not blessed)"}',
             *([f'  model card: {self.model_card}'] if self.model_card else []),
             *[f'  TFLite model: {path}' for path in self.tflite_models],
             f'  metadata: {self.metadata_path}',
             f'  pipeline root: {self.pipeline_root}',
             f'  report: {self.report or "(not written)"}']
    return '\n'.join(lines)


def summarize(settings: SummarySettings, run_id: Optional[str] = None,
              seconds: float = 0.0) -> RunSummary:
  """Reads a run's outcome (default: the latest run's) back from ML Metadata: states, test
  metrics, blessing, push. ValueError for a store without the run."""
  store = metadata.open_sqlite(settings.metadata_path, read_only=True)
  run = metadata.find_run(store, settings.pipeline_name, run_id, settings.metadata_path)
  infos = metadata.executions_by_node(store, run)
  states, test_metrics, blessed, pushed, because, tflite = {}, {}, None, None, [], []
  for node, info in infos.items():
    states[node] = info.state
    for artifact in info.outputs.get('evaluation', []):
      lines = tfma_results.validation(artifact.uri, report.model_classes(infos.get('Trainer')),
                                      settings.min_test_examples_per_class)[1]
      if node == tfma_results.REVIEWED_EVALUATOR:  # held-out reviewed clips: checked after
        because += [f'reviewed clips: {line}' for line in lines]
      else:
        test_metrics = tfma_results.overall_metrics(artifact.uri)
        because = lines + because
    for artifact in info.outputs.get('blessing', []):  # blessed by every Evaluator
      blessed = (blessed is not False) and bool(metadata.property_value(artifact, 'blessed'))
    for artifact in info.outputs.get('pushed_model', []):
      if metadata.property_value(artifact, 'pushed'):
        pushed = metadata.property_value(artifact, 'pushed_destination')
    for artifact in info.outputs.get('tflite_model', []):  # components/tflite_export.py
      tflite += [p for p in str(metadata.property_value(artifact, 'pushed_models') or ''
                                ).split(',') if p]
  return RunSummary(run.name, seconds, states, test_metrics, blessed, pushed,
                    os.path.abspath(settings.metadata_path), settings.pipeline_root,
                    not_blessed_because=because, tflite_models=tflite)


def add_report(summary: RunSummary, settings: report.RunSettings) -> RunSummary:
  """Writes the run's HTML report and records its path in the summary; a report that cannot
  be written is recorded as such (the run itself succeeded)."""
  try:
    summary.report = os.path.abspath(report.build(settings, summary.run_id))
  except (outputs.OutputExists, OSError, extras.MissingExtra) as e:
    summary.report = f'not written: {e}'
  return summary


def add_model_card(summary: RunSummary, settings: SummarySettings) -> RunSummary:
  """Writes the model card beside the model the run pushed (`audit.model_card`) and records
  its path in the summary; a card that cannot be written is recorded as such."""
  if not summary.pushed_model:
    return summary
  try:
    store = metadata.open_sqlite(settings.metadata_path, read_only=True)
    run = metadata.find_run(store, settings.pipeline_name, summary.run_id,
                            settings.metadata_path)
    path = model_card.write(store, run)
    summary.model_card = os.path.abspath(path) if path else None
  except (OSError, ValueError) as e:  # outputs.OutputExists is a ValueError
    summary.model_card = f'not written: {e}'
  return summary
