"""The model card of a pushed model: Markdown and HTML beside it, rendered with Jinja2 from what
the run recorded (TFMA's metrics per slice with 95 % Wilson intervals, the blessing and the
comparison with the last pushed model, the data's classes and splits from the ingest
manifest, the Trainer's inputs from ML Metadata's lineage).

The card sits beside the version folder TF Serving loads,
`<serving_dir>/<model_name>/<version>.model_card.{md,html}`: it names its version, travels with
the serving folder, and TF Serving (and `predict`, `serve`) read only numeric names there. The
pushed SavedModel itself is never modified.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Dict, List, Optional, Sequence

import jinja2
import markupsafe

from vivit_tfx import outputs
from vivit_tfx.audit import lineage, metadata, report, tfma_results
from vivit_tfx.data import clip_config

TEMPLATES = os.path.join(os.path.dirname(__file__), 'templates')
# The fixed text of every card (both pages render these lists; `code` in backticks).
INTENDED_USES = (
    'Helping people who review video (CCTV, body cams, venue cameras) find stretches that '
    'may show physical violence such as fights, faster than watching everything.',
    'Ranking and flagging footage for a human to look at: every alert is checked by a person '
    'before anyone acts on it.',
    'Measuring, on your own footage, whether a new model raises fewer false alarms than the '
    'old one (the per-slice metrics below).')
OUT_OF_SCOPE = (
    'Any decision about a person (arrest, dismissal, denial of entry, punishment) made on its '
    'score without a person reviewing the footage.',
    'Identifying, tracking or profiling people: it has no notion of identity and must not be '
    'combined with face recognition to single out individuals.',
    'Automatic responses without human review (locking doors, calling the police) and '
    'safety-critical alarms: it misses events (recall) and raises false alarms (false-alarm '
    'rate).',
    'Footage unlike its training data (other camera heights, thermal or night cameras, sports, '
    'films and games, dense crowds) until it has been evaluated on such footage.',
    'Monitoring lawful assembly or protest, or any use the law of the place forbids.')
REPORTING = (
    'Open the video on the review page of `vivit-tfx serve --videos-dir DIR` and mark the '
    'flagged segment `not violent` (a missed stretch: its start, end and class); the verdicts '
    'are kept for the next training run.',
    'Without the review page: add the video with its true class to a CSV dataset '
    '(`path,label,group`, layout `csv`) and pass it to `vivit-tfx run`.',
    'Tell the team that runs the model which version raised it, the camera and the time: the '
    "next model's card shows whether that source's slice improved.")
SUFFIXES = ('.model_card.md', '.model_card.html')
# A slice with fewer test videos than this is called out among the limitations.
SMALL_SLICE = 10


@dataclasses.dataclass
class SliceRow:
  """One slice of the evaluation: its name and each rate with its interval, as text."""
  name: str
  videos: int
  rates: Dict[str, str]  # rate name → '0.92 [0.80, 0.97] (23/25)'


@dataclasses.dataclass
class Change:
  """A metric of the candidate against the last pushed model on one slice."""
  slice: str
  metric: str
  candidate: float
  baseline: float
  change: float


@dataclasses.dataclass
class CardFacts:
  """Everything a card shows (the templates' one argument, `card`)."""
  model_name: str
  version: str
  pushed_to: str
  run_id: str
  classes: List[str]
  positive_class: str
  clip: str  # how the model sees a video
  blessed: bool
  blessing_failures: List[str]
  blessing_settings: Dict[str, object]
  data: Optional[dict]  # report.data_summary
  splits: List[List[object]]  # [[split, count per class…, total]]
  inputs: Dict[str, str]  # the Trainer's input artifacts (lineage)
  rate_names: List[str]
  slices: List[SliceRow]
  baseline: str  # the last pushed model's URI ('' on a first run)
  changes: List[Change]
  limitations: List[str]


def facts(store, run) -> Optional[CardFacts]:
  """The card of the model a run pushed, read from ML Metadata and TFMA; None when the run
  pushed nothing (or has no evaluation)."""
  infos = metadata.executions_by_node(store, run)
  pushed = _pushed(infos)
  evaluator = infos.get(tfma_results.EVALUATOR)
  evaluation = _evaluation(infos, tfma_results.EVALUATOR)
  if pushed is None or evaluation is None:
    return None
  destination = str(metadata.property_value(pushed, 'pushed_destination'))
  model = _model_clip_config(destination)
  classes = report.model_classes(infos.get('Trainer'))
  result = tfma_results.load(evaluation.uri)
  rates = tfma_results.slice_rates(result, classes)
  rate_names = [n for n in ('accuracy', 'recall', 'false_alarm_rate')
                if any(n in r for _, r in rates)]
  slices = [SliceRow(name, r['accuracy'].n, {n: r[n].text() for n in rate_names if n in r})
            for name, r in rates]
  ok, failures = tfma_results.validation(evaluation.uri, classes)
  changes = _changes(tfma_results.metrics_by_slice(result, classes))
  reviewed = _evaluation(infos, tfma_results.REVIEWED_EVALUATOR)
  if reviewed is not None:  # the held-out reviewed clips (`run --reviewed-clips`)
    reviewed_ok, lines = tfma_results.validation(reviewed.uri, classes)
    ok, failures = ok and reviewed_ok, failures + [f'reviewed clips: {l}' for l in lines]
    changes += [dataclasses.replace(c, slice=f'reviewed clips, {c.slice}') for c in _changes(
        tfma_results.metrics_by_slice(tfma_results.load(reviewed.uri), classes))]
  producer = lineage.producer(store, evaluation) or evaluator.execution
  baseline = next(iter(evaluator.inputs.get('baseline_model', [])), None)
  data = report.run_data(store, infos)
  return CardFacts(
      model_name=os.path.basename(os.path.dirname(destination.rstrip('/'))),
      version=os.path.basename(destination.rstrip('/')), pushed_to=destination,
      run_id=run.name, classes=classes,
      positive_class=model.positive_class if model else (classes[-1] if classes else ''),
      clip=_clip_text(model), blessed=ok, blessing_failures=failures,
      blessing_settings=lineage.blessing_settings(
          metadata.execution_property(producer, 'eval_config')),
      data=data, splits=_splits(data), inputs=lineage.run_facts(store, run)['inputs'],
      rate_names=rate_names, slices=slices, baseline=baseline.uri if baseline else '',
      changes=changes,
      limitations=_limitations(slices, data, model, classes))


def _evaluation(infos, node: str):
  """The evaluation artifact of an Evaluator node, None without one."""
  info = infos.get(node)
  return next(iter(info.outputs.get('evaluation', [])), None) if info else None


def _pushed(infos):
  pusher = infos.get('Pusher')
  for artifact in (pusher.outputs.get('pushed_model', []) if pusher else []):
    if metadata.property_value(artifact, 'pushed'):
      return artifact
  return None


def _model_clip_config(model_dir: str) -> Optional[clip_config.ModelClipConfig]:
  try:
    return clip_config.clip_config_of(model_dir)
  except (clip_config.NoModelError, OSError, ValueError):
    return None


def _clip_text(model: Optional[clip_config.ModelClipConfig]) -> str:
  if model is None:
    return 'unknown (the model carries no clip config)'
  if not model.sample_fps:
    return (f'{model.num_frames} frames spread over the whole video, '
            f'{model.frame_size[0]}×{model.frame_size[1]} px')
  return (f'clips of {model.num_frames} frames at {model.sample_fps:g} fps '
          f'(about {model.num_frames / model.sample_fps:.1f} s), '
          f'{model.frame_size[0]}×{model.frame_size[1]} px, from the central '
          f'{model.max_duration_s:g} s of a video; {model.num_views} view(s) per video averaged')


def _splits(data: Optional[dict]) -> List[List[object]]:
  if not data:
    return []
  return [row + [sum(row[1:])] for row in report.split_rows(data)]


def _changes(rows) -> List[Change]:
  """Each metric TFMA compared with the baseline, per slice (`*_diff` = candidate − baseline)."""
  out = []
  for name, metrics in rows:
    for key, diff in sorted(metrics.items()):
      value = metrics.get(key[:-len('_diff')])
      if key.endswith('_diff') and isinstance(value, float) and not math.isnan(diff):
        out.append(Change(name, key[:-len('_diff')], value, value - diff, diff))
  return out


def _limitations(slices: Sequence[SliceRow], data: Optional[dict],
                 model: Optional[clip_config.ModelClipConfig], classes: Sequence[str]
                 ) -> List[str]:
  """What the numbers above do not say, from this run's own data."""
  lines = []
  overall = next((s for s in slices if s.name == 'overall'), None)
  if overall is not None:
    lines.append(f'Measured on {overall.videos} test videos: read the intervals, not the point '
                 'values; a difference inside them is not evidence of a better model.')
  small = [s.name for s in slices if s.name != 'overall' and s.videos < SMALL_SLICE]
  if small:
    lines.append(f'Slices with fewer than {SMALL_SLICE} test videos say little: '
                 f'{", ".join(small)}.')
  if model is not None and model.sample_fps:
    lines.append(f'It sees at most the central {model.max_duration_s:g} s of a video, in '
                 f'clips of about {model.num_frames / model.sample_fps:.1f} s: violence '
                 'outside that stretch, or briefer than a clip, can be missed; long footage '
                 'is scored window by window (`predict --timeline`, `watch`).')
  lines.append(f'It knows only the classes {", ".join(classes)}: weapons, self-harm, verbal '
               'abuse or distress without physical violence are outside them.')
  if data:
    root = data.get('input_root') or 'the ingested clips'
    lines.append(f'Trained on {root} (layout {data.get("layout") or "unknown"}): cameras, '
                 'angles, lighting, resolutions or crowds unlike those sources may score '
                 'differently; the source slices show only the sources it was tested on.')
    if os.path.basename(os.path.normpath(root)) == 'synthetic_videos':
      lines.append('The videos are the built-in synthetic ones: these metrics say nothing '
                   'about real footage.')
  return lines


def _environment() -> jinja2.Environment:
  env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                           lstrip_blocks=True, keep_trailing_newline=True,
                           autoescape=jinja2.select_autoescape(['html']),
                           undefined=jinja2.StrictUndefined)
  env.filters['cell'] = lambda v: str(v).replace('|', '\\|').replace('\n', ' ')
  env.filters['code'] = lambda v: markupsafe.Markup(re.sub(
      r'`([^`]+)`', r'<code>\1</code>', str(markupsafe.escape(v))))
  return env


def render(card: CardFacts) -> Dict[str, str]:
  """{'.model_card.md': Markdown, '.model_card.html': HTML} of a card."""
  env = _environment()
  text = dict(uses=INTENDED_USES, out_of_scope=OUT_OF_SCOPE, reporting=REPORTING)
  return {suffix: env.get_template(f'model_card{os.path.splitext(suffix)[1]}.j2').render(
      card=card, **text) for suffix in SUFFIXES}


def write(store, run, overwrite: bool = False, out_dir: str = '') -> Optional[str]:
  """Writes the card of the model a run pushed beside it, or into `out_dir` (a local folder:
  for a model pushed to a remote destination, e.g. a Kubeflow run's gs:// serving folder);
  returns the Markdown's path (None: nothing pushed). A same-named file the project did not
  write stops it (`outputs.OutputExists`), before anything is written."""
  card = facts(store, run)
  if card is None:
    return None
  if '://' in (out_dir or card.pushed_to):
    raise OSError(f'{out_dir or card.pushed_to}: the card is written beside a local model or '
                  'into a local folder: `vivit-tfx model-card --out-dir DIR`')
  folder = outputs.OutputFolder(out_dir or os.path.dirname(card.pushed_to.rstrip('/')),
                                overwrite)
  pages = render(card)
  paths = folder.claim(*[card.version + s for s in SUFFIXES])
  for path, suffix in zip(paths, SUFFIXES):
    with open(path, 'w') as f:
      f.write(pages[suffix])
  folder.done()
  return paths[0]
