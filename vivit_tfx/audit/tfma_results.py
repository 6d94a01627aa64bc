"""Reading an Evaluator output with TFMA's own loaders: metrics per slice, plots, validation."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

from vivit_tfx.data import features

EVALUATOR = 'Evaluator'  # the test split's Evaluator (its blessing lets the Pusher push)
# The node id of the Evaluator of the held-out reviewed clips (`run --reviewed-clips`).
REVIEWED_EVALUATOR = 'ReviewedEvaluator'


def _tfma():
  """TFMA, imported on first use: it takes ~5 s, and the run summary, lineage and report
  import this module before they know whether there is an evaluation to read."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  return tfma


def load(evaluation_uri: str):
  """The candidate's EvalResult (TFMA names it 'candidate' when there was a baseline)."""
  tfma = _tfma()
  for model_name in ('candidate', None):
    result = tfma.load_eval_result(evaluation_uri, model_name=model_name)
    if result.slicing_metrics:
      return result
  return result


def _scalars(values: dict) -> Dict[str, float]:
  """{metric name: value}; a per-class metric is named 'precision[classId:2]' (per-class
  metrics are computed by argmax, TFMA's 'classId:2 topK:1')."""
  flat = {}
  for per_output in values.values():
    for sub_key, per_class in per_output.items():
      sub_key = sub_key.replace(' topK:1', '')
      for name, value in per_class.items():
        if isinstance(value, dict) and 'doubleValue' in value:
          flat[f'{name}[{sub_key}]' if sub_key else name] = float(value['doubleValue'])
  return flat


def readable(name: str, classes: List[str]) -> str:
  """'precision[classId:2]' → 'precision[Fighting]' (class names in label order)."""
  match = re.fullmatch(r'(.*)\[classId:(\d+)\](.*)', name)
  if not match or int(match.group(2)) >= len(classes):
    return name
  return f'{match.group(1)}[{classes[int(match.group(2))]}]{match.group(3)}'


def multiclass_confusion(result) -> Optional[Dict[str, list]]:
  """{'matrix': [[count]]} (true class × predicted class) of the overall slice, if plotted."""
  plot = _overall_plots(result).get('multiClassConfusionMatrixAtThresholds', {})
  entries = (plot.get('matrices') or [{}])[0].get('entries', [])
  if not entries:
    return None
  n = 1 + max(max(int(e.get('actualClassId', 0)), int(e.get('predictedClassId', 0)))
              for e in entries)
  matrix = [[0.0] * n for _ in range(n)]
  for e in entries:
    matrix[int(e.get('actualClassId', 0))][int(e.get('predictedClassId', 0))] += float(
        e.get('numWeightedExamples', 0.0))
  return {'matrix': matrix}


def slice_name(slice_key: Tuple, classes: Sequence[str] = ()) -> str:
  """'container=mp4, label=Violence' (a label slice by class name when the classes are known)."""
  return ', '.join(f'{k}={class_name(v, classes) if k == features.LABEL else v}'
                   for k, v in slice_key) or 'overall'


def class_name(label, classes: Sequence[str] = ()) -> str:
  """Label 1 → 'Violence' (classes in label order); the label itself when unknown."""
  try:
    return classes[int(label)]
  except (ValueError, TypeError, IndexError):
    return str(label)


def metrics_by_slice(result, classes: Sequence[str] = (), shown: bool = False
                     ) -> List[Tuple[str, Dict[str, float]]]:
  """[(slice name, {metric: value})], overall first. shown: a metric a slice cannot define
  is text instead ('n/a (no positives)': AUC, precision and recall of a binary label slice
  without positives; a NaN anywhere: 'n/a'), never 0 or nan."""
  rows = [(slice_name(k, classes), _undefined(k, _scalars(v)) if shown else _scalars(v))
          for k, v in result.slicing_metrics]
  return sorted(rows, key=lambda r: (r[0] != 'overall', r[0]))


# Binary metrics a slice with one class cannot define (TFMA reports 0 or nan for them).
_NEED_POSITIVES = ('auc', 'auc_precision_recall', 'precision', 'recall')
_NEED_NEGATIVES = ('auc', 'auc_precision_recall')


def _undefined(key: Tuple, metrics: Dict[str, float]) -> Dict[str, object]:
  label = dict(key).get(features.LABEL)
  binary = 'binary_accuracy' in metrics
  out = {}
  for name, value in metrics.items():
    if binary and str(label) == '0' and name in _NEED_POSITIVES:
      out[name] = 'n/a (no positives)'
    elif binary and str(label) == '1' and name in _NEED_NEGATIVES:
      out[name] = 'n/a (no negatives)'
    else:
      out[name] = 'n/a' if math.isnan(value) else value
  return out


def overall_metrics(evaluation_uri: str) -> Dict[str, float]:
  return dict(metrics_by_slice(load(evaluation_uri))).get('overall', {})


def _overall_plots(result, slice_key: Tuple = ()) -> dict:
  """The plots of one slice (default: the whole test split) by name."""
  for key, plots in getattr(result, 'plots', None) or []:
    if tuple(key) == tuple(slice_key):
      return {name: value for per_output in plots.values()
              for per_class in per_output.values() for name, value in per_class.items()}
  return {}


def confusion_matrix(result, threshold: float = 0.5,
                     slice_key: Tuple = ()) -> Optional[Dict[str, float]]:
  """{tp, fp, tn, fn} of a slice (default: overall) at the threshold closest to `threshold`."""
  matrices = _overall_plots(result, slice_key).get('confusionMatrixAtThresholds', {}).get(
      'matrices', [])
  if not matrices:
    return None
  m = min(matrices, key=lambda x: abs(x.get('threshold', 0.0) - threshold))
  return {k: float(m.get(name, 0.0)) for k, name in (
      ('tp', 'truePositives'), ('fp', 'falsePositives'), ('tn', 'trueNegatives'),
      ('fn', 'falseNegatives'))} | {'threshold': float(m.get('threshold', 0.0))}


def wilson(successes: float, n: float, z: float = 1.96) -> Tuple[float, float]:
  """The Wilson score interval (95 % at z = 1.96) of a proportion successes / n; (nan, nan)
  for n = 0. Unlike the normal approximation it stays within [0, 1] and is honest for small
  slices and proportions near 0 or 1."""
  if n <= 0:
    return math.nan, math.nan
  p = successes / n
  denominator = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denominator
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
  return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass
class Proportion:
  """A rate measured on a slice: successes out of n, with its 95 % Wilson interval."""
  successes: int
  n: int

  @property
  def value(self) -> float:
    return self.successes / self.n if self.n else math.nan

  @property
  def interval(self) -> Tuple[float, float]:
    return wilson(self.successes, self.n)

  def text(self) -> str:
    """'0.92 [0.80, 0.97] (23/25)'; 'n/a (0 videos)' when nothing was measured."""
    if not self.n:
      return 'n/a (0 videos)'
    low, high = self.interval
    return f'{self.value:.2f} [{low:.2f}, {high:.2f}] ({self.successes}/{self.n})'


def slice_rates(result, classes: Sequence[str] = ()) -> List[Tuple[str, Dict[str, Proportion]]]:
  """[(slice name, {'accuracy', and for two classes 'recall' and 'false_alarm_rate' at the 0.5
  threshold: Proportion})], overall first: every slice of the evaluation, with the counts its
  intervals come from (accuracy × example_count; the slice's confusion matrix)."""
  rows = []
  for key, values in getattr(result, 'slicing_metrics', None) or []:
    metrics = _scalars(values)
    n = int(round(metrics.get('example_count', 0.0)))
    accuracy = next((metrics[k] for k in ('binary_accuracy', 'sparse_categorical_accuracy')
                     if k in metrics and not math.isnan(metrics[k])), None)
    rates = {'accuracy': Proportion(int(round(accuracy * n)) if accuracy is not None else 0,
                                    n if accuracy is not None else 0)}
    cm = confusion_matrix(result, 0.5, key) if 'binary_accuracy' in metrics else None
    if cm:
      tp, fp, tn, fn = (int(round(cm[k])) for k in ('tp', 'fp', 'tn', 'fn'))
      rates['recall'] = Proportion(tp, tp + fn)
      rates['false_alarm_rate'] = Proportion(fp, fp + tn)
    rows.append((slice_name(key, classes), rates))
  return sorted(rows, key=lambda r: (r[0] != 'overall', r[0]))


def calibration(result, bins: int = 10) -> List[Tuple[float, float, float]]:
  """Reliability diagram of the overall slice: [(mean prediction, mean label, count)] per bin."""
  buckets = _overall_plots(result).get('calibrationHistogramBuckets', {}).get('buckets', [])
  sums = [[0.0, 0.0, 0.0] for _ in range(bins)]
  for b in buckets:
    low = max(0.0, min(float(b.get('lowerThresholdInclusive', 0.0)), 0.999999))  # '-Infinity'
    s = sums[int(low * bins)]
    s[0] += b.get('totalWeightedRefinedPrediction', 0.0)
    s[1] += b.get('totalWeightedLabel', 0.0)
    s[2] += b.get('numWeightedExamples', 0.0)
  return [(p / n, l / n, n) for p, l, n in sums if n > 0]


def validation(evaluation_uri: str, classes: Sequence[str] = (),
               min_examples: Optional[int] = None) -> Tuple[bool, List[str]]:
  """(blessed by the thresholds?, each failed check as a line with its numbers)."""
  result = _tfma().load_validation_result(evaluation_uri)
  return bool(result.validation_ok), failure_lines(result, classes, min_examples)


def failure_lines(result, classes: Sequence[str] = (),
                  min_examples: Optional[int] = None) -> List[str]:
  """A TFMA ValidationResult's failed checks, one line each with the value, the bound and the
  option that sets it: 'Violence: 3 test videos < 5 (--min-test-examples-per-class)',
  'accuracy 0.62 < 0.80 (--accuracy-threshold)'. `min_examples`: --min-test-examples-per-class
  (a larger count bound came from --min-test-fraction-per-class)."""
  slicer_lib = _tfma().slicer.slicer_lib
  ranked = []  # (rank, line): the whole test split's checks, then each class's, then slices'
  for per_slice in result.metric_validations_per_slice:
    key = slicer_lib.deserialize_slice_key(per_slice.slice_key)
    for f in per_slice.failures:
      rank = 0 if not key else 1 if f.metric_key.name == 'example_count' else 2
      ranked.append((rank, _failure_line(f, key, classes, min_examples)))
  for spec in result.missing_slices:
    label = dict(spec.feature_values).get(features.LABEL)
    if label is not None:
      line = f'{class_name(label, classes)}: no test video'
    elif spec.feature_keys:  # clips ingested before the slice features were recorded
      line = (f'no test video has a {", ".join(spec.feature_keys)} (--min-slice-accuracy: '
              'ingest the videos again to record it)')
    else:
      line = f'no test example in slice {dict(spec.feature_values) or "overall"}'
    ranked.append((1, line))
  return [line for _, line in sorted(ranked, key=lambda r: r[0])]


def _failure_line(failure, key: Tuple, classes: Sequence[str],
                  min_examples: Optional[int]) -> str:
  name, value = failure.metric_key.name, failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  where = f' on {slice_name(key, classes)}' if key else ''
  label = dict(key).get(features.LABEL)
  if name == 'example_count' and label is not None:
    bound = math.ceil(threshold.value_threshold.lower_bound.value)
    flag = ('--min-test-examples-per-class' if min_examples is None or bound <= min_examples
            else '--min-test-fraction-per-class')
    return f'{class_name(label, classes)}: {value:g} test videos < {bound} ({flag})'
  shown = 'accuracy' if name.endswith('accuracy') else name
  if failure.metric_key.is_diff:
    allowed = -threshold.change_threshold.absolute.value
    if allowed < 0:  # a gain is required (the held-out reviewed clips)
      return (f'{shown}{where} {value:+.2f} against the last pushed model, a gain smaller '
              f'than {-allowed - 1e-9:.2f} (--min-reviewed-gain)')
    return (f'{shown}{where} {value:+.2f} against the last pushed model, a drop larger than '
            f'{max(allowed - 1e-9, 0):.2f} (--max-accuracy-drop)')
  bounds = threshold.value_threshold
  if bounds.HasField('lower_bound') and value < bounds.lower_bound.value:
    per_source = any(k in features.SLICE_FEATURES for k, _ in key)
    flag = ('' if shown != 'accuracy' else ' (--min-slice-accuracy)' if per_source else
            ' (--accuracy-threshold)')
    return f'{shown}{where} {value:.2f} < {bounds.lower_bound.value:.2f}{flag}'
  if bounds.HasField('upper_bound') and value > bounds.upper_bound.value:
    return f'{shown}{where} {value:.2f} > {bounds.upper_bound.value:.2f}'
  return f'{shown}{where} {value:g}: {failure.message or "outside its threshold"}'
