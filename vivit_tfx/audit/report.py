"""`vivit-tfx report`: one HTML page with PNG figures for a pipeline run, found through MLMD.

Curves from the Trainer's TensorBoard logs, TFMA metrics overall and per slice, confusion
matrix and calibration plot, candidate against baseline with the blessing decision, and a data
summary from the ingestion manifest.
"""
from __future__ import annotations

import collections
import html
import io
import json
import os
from typing import Dict, List, NamedTuple, Optional, Protocol

import numpy as np
import tensorflow as tf

from vivit_tfx import extras, outputs
from vivit_tfx.audit import lineage, metadata, tfma_results
from vivit_tfx.data import clip_config, ingest, remote_files
from vivit_tfx.data.features import CLASS_NAMES
from vivit_tfx.models.videomae import videomae_pretrain


class RunSettings(Protocol):
  """What the report reads of a run's settings (a `pipeline.configs.PipelineConfig` has it)."""
  pipeline_name: str
  output_root: str
  metadata_path: str
  min_test_examples_per_class: int
  overwrite: bool


class Settings(NamedTuple):
  """RunSettings from `vivit-tfx report`'s options (no whole pipeline config)."""
  pipeline_name: str
  output_root: str
  metadata_path: str
  min_test_examples_per_class: int
  overwrite: bool


def read_curves(model_run_dir: str) -> Dict[str, Dict[str, List[float]]]:
  """{'train'|'validation': {tag: [value per epoch]}} from Keras' TensorBoard event files."""
  curves: Dict[str, Dict[str, List[float]]] = {}
  for split in ('train', 'validation'):
    for path in sorted(tf.io.gfile.glob(os.path.join(model_run_dir, split, 'events.*'))):
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.tag.startswith('epoch_'):
            number = float(tf.make_ndarray(value.tensor)) if value.HasField('tensor') else (
                value.simple_value)
            curves.setdefault(split, {}).setdefault(value.tag[6:], []).append(number)
  return curves


def plot_curves(curves, path: str) -> Optional[str]:
  tags = [t for t in ('loss', 'accuracy', 'auc') if t in curves.get('train', {})]
  if not tags:
    return None
  plt = extras.pyplot()
  fig, axes = plt.subplots(1, len(tags), figsize=(4.2 * len(tags), 3.2))
  for ax, tag in zip(list(getattr(axes, 'flat', [axes])), tags):
    for split, style in (('train', '-o'), ('validation', '-s')):
      values = curves.get(split, {}).get(tag)
      if values:
        ax.plot(range(1, len(values) + 1), values, style, ms=3, label=split)
    ax.set(title=tag, xlabel='epoch')
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_pretraining(history: Dict[str, List[float]], path: str) -> Optional[str]:
  """The masked-autoencoder loss of every pre-training step."""
  if not history.get('loss'):
    return None
  plt = extras.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.plot(history['step'], history['loss'], lw=1)
  ax.set(title='VideoMAE pre-training loss (masked tubelets)', xlabel='step', ylabel='MSE')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_reconstructions(shown: Dict[str, np.ndarray], path: str) -> Optional[str]:
  """Per clip, rows masked input / reconstruction / original; columns every other frame.
  Each clip is scaled to [0, 1] by its original's range."""
  original = shown.get('original')
  if original is None or not len(original):
    return None
  plt = extras.pyplot()
  rows = ('masked', 'reconstruction', 'original')
  b, t = original.shape[:2]
  frames = list(range(0, t, 2))
  fig, axes = plt.subplots(b * 3, len(frames), figsize=(1.3 * len(frames), 1.3 * b * 3),
                           squeeze=False)
  for i in range(b):
    low, high = float(original[i].min()), float(original[i].max())
    for r, name in enumerate(rows):
      for j, f in enumerate(frames):
        ax = axes[i * 3 + r, j]
        ax.imshow(np.clip((shown[name][i, f] - low) / max(high - low, 1e-6), 0, 1))
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
          ax.set_ylabel(name, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def read_pretraining(model_uri: str):
  """(loss history, reconstructions) of a pre-training Trainer's model, ({}, {}) if absent."""
  directory = os.path.join(model_uri, 'Format-Serving')
  try:
    with tf.io.gfile.GFile(os.path.join(directory, videomae_pretrain.HISTORY_FILE)) as f:
      history = json.load(f)
    with tf.io.gfile.GFile(os.path.join(directory, videomae_pretrain.RECONSTRUCTIONS_FILE),
                           'rb') as f:
      shown = dict(np.load(io.BytesIO(f.read())))
  except (tf.errors.OpError, ValueError, OSError):
    return {}, {}
  return history, shown


def plot_confusion(cm: Dict[str, float], path: str, classes: List[str]) -> str:
  """A binary {tp, fp, tn, fn} dict or a multi-class {'matrix': [[count]]} (true × predicted)."""
  plt = extras.pyplot()
  matrix = cm['matrix'] if 'matrix' in cm else [[cm['tn'], cm['fp']], [cm['fn'], cm['tp']]]
  n = len(matrix)
  names = [classes[i] if i < len(classes) else str(i) for i in range(n)]
  fig, ax = plt.subplots(figsize=(2.4 + 0.7 * n, 2.2 + 0.6 * n))
  ax.imshow(matrix, cmap='Blues')
  for i in range(n):
    for j in range(n):
      ax.text(j, i, f'{matrix[i][j]:.0f}', ha='center', va='center', fontsize=14)
  ax.set(xticks=list(range(n)), yticks=list(range(n)), xticklabels=names, yticklabels=names,
         xlabel='predicted', ylabel='true',
         title='test split' + (f', threshold {cm["threshold"]:.2f}' if 'threshold' in cm
                               else ''))
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_calibration(points, path: str) -> Optional[str]:
  if not points:
    return None
  plt = extras.pyplot()
  fig, ax = plt.subplots(figsize=(3.6, 3.4))
  ax.plot([0, 1], [0, 1], '--', color='#999999', label='perfectly calibrated')
  ax.scatter([p for p, _, _ in points], [l for _, l, _ in points],
             s=[20 + 4 * n for _, _, n in points], color='#c0392b', label='bins (size: clips)')
  ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='mean predicted P(violence)',
         ylabel='fraction violent', title='calibration (test split)')
  ax.legend(fontsize=7, loc='upper left')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _ingest_summary(input_base: str) -> 'ingest.IngestSummary':
  """The clips' ingest summary, read like their manifest (any URI); empty without one."""
  if remote_files.exists(os.path.join(input_base, ingest.SUMMARY)):
    return ingest.IngestSummary.read(input_base)
  return ingest.IngestSummary()


def data_summary(input_base: str) -> Optional[dict]:
  """Clips per split and class, durations, skipped inputs: from the ingestion manifest."""
  path = os.path.join(input_base or '', 'manifest.jsonl')
  try:
    if not input_base or not remote_files.exists(path):
      return None
    with remote_files.open_text(path) as f:
      entries = [json.loads(line) for line in f]
  except tf.errors.OpError:  # e.g. a bucket this machine cannot reach: no data section
    return None
  counts = collections.Counter((e['split'], e['label']) for e in entries if e['status'] == 'ok')
  durations = collections.defaultdict(list)
  for e in entries:
    if e['status'] == 'ok' and e.get('duration_s') is not None:
      durations[e['label']].append(e['duration_s'])
  ingested = _ingest_summary(input_base)
  # Clips ingested before class lists were recorded: the RLVS classes.
  classes = ingested.classes or list(CLASS_NAMES)
  return {'counts': counts, 'durations': durations, 'classes': classes,
          'layout': ingested.layout, 'input_root': ingested.input_root,
          'skipped': [(e['path'], e['reason']) for e in entries if e['status'] == 'skipped']}


def run_data(store, infos) -> Optional[dict]:
  """`data_summary` of the clips a run's ExampleGen read (the execution that first produced
  them, when this one was cached); None without one."""
  example_gen = next((i for n, i in infos.items() if n.endswith('ExampleGen')), None)
  if example_gen is None:
    return None
  examples = next(iter(example_gen.outputs.get('examples', [])), None)
  origin = lineage.producer(store, examples) if examples is not None else None
  return data_summary(metadata.execution_property(origin or example_gen.execution,
                                                  'input_base'))


def split_rows(summary: dict) -> List[List[object]]:
  """[[split, videos of each class…]] for train, eval, test from a `data_summary`."""
  classes = summary['classes']
  return [[split] + [summary['counts'].get((split, l), 0) for l in range(len(classes))]
          for split in ('train', 'eval', 'test')]


def plot_durations(durations, path: str, classes: List[str]) -> Optional[str]:
  if not durations:
    return None
  plt = extras.pyplot()
  fig, ax = plt.subplots(figsize=(4.6, 3.0))
  for label in sorted(durations):
    ax.hist(durations[label], bins=15, alpha=0.6,
            label=classes[label] if label < len(classes) else str(label))
  ax.set(xlabel='duration (s)', ylabel='videos', title='video durations')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def model_classes(trainer) -> List[str]:
  """Class names in label order from the trained model's clip config (RLVS's if absent)."""
  model = next(iter(trainer.outputs.get('model', [])), None) if trainer else None
  try:
    if model:
      return list(clip_config.clip_config_of(os.path.join(model.uri, 'Format-Serving')).class_names)
  except (clip_config.NoModelError, tf.errors.OpError):  # not ours, or a bucket out of reach
    pass
  return list(clip_config.CLASS_NAMES)


def _table(header: List[str], rows: List[List[object]]) -> str:
  cell = lambda v: f'{v:.4f}' if isinstance(v, float) else html.escape(str(v))
  return ('<table><tr>' + ''.join(f'<th>{html.escape(h)}</th>' for h in header) + '</tr>' +
          ''.join('<tr>' + ''.join(f'<td>{cell(v)}</td>' for v in r) + '</tr>' for r in rows) +
          '</table>')


FILES = ('index.html', 'durations.png', 'curves.png', 'confusion.png', 'calibration.png',
         'pretrain_loss.png', 'reconstructions.png')


def build(config: RunSettings, run_id: Optional[str] = None,
          out_dir: Optional[str] = None, store=None) -> str:
  """Writes <output_root>/reports/<run id>/index.html (+ PNGs); returns the HTML path.

  store: an open ML Metadata store (e.g. Kubeflow's); default: the local run's sqlite.
  A file of the user's in `out_dir` is never replaced (`outputs.OutputFolder`) unless
  `config.overwrite`.
  """
  extras.require('report')  # before any work: the figures need matplotlib
  where = 'this metadata store' if store is not None else config.metadata_path
  store = store if store is not None else metadata.open_sqlite(config.metadata_path, read_only=True)
  run = metadata.find_run(store, config.pipeline_name, run_id, where)
  out_dir = out_dir or os.path.join(config.output_root, 'reports', run.name.replace(':', '-'))
  folder = outputs.OutputFolder(out_dir, config.overwrite)
  path = dict(zip(FILES, folder.claim(*FILES)))
  infos = metadata.executions_by_node(store, run)
  parts = [f'<h1>Run {html.escape(run.name)}</h1>',
           _table(['component', 'execution', 'state'],
                  [[n, i.execution.id, i.state] for n, i in infos.items()])]
  figure = lambda p: f'<img src="{os.path.basename(p)}">' if p else ''

  summary = run_data(store, infos)
  if summary:
    classes = summary['classes']
    parts += ['<h2>Data</h2>', _table(['split', *classes], split_rows(summary)),
              figure(plot_durations(summary['durations'],
                                    path['durations.png'], classes)),
              f'<p>{len(summary["skipped"])} input(s) skipped.</p>']
    if summary['skipped']:
      parts.append(_table(['file', 'reason'], summary['skipped']))

  pretrainer = infos.get('PretrainTrainer')
  pretrained = next(iter(pretrainer.outputs.get('model', [])), None) if pretrainer else None
  if pretrained is not None:
    history, shown = read_pretraining(pretrained.uri)
    parts += ['<h2>Pre-training (VideoMAE)</h2>',
              figure(plot_pretraining(history, path['pretrain_loss.png'])),
              '<p>Held-out clips: masked input, reconstruction, original.</p>',
              figure(plot_reconstructions(shown, path['reconstructions.png']))]

  trainer = infos.get('Trainer')
  if trainer is not None:
    runs_dir = next(iter(trainer.outputs.get('model_run', [])), None)
    if runs_dir is not None:
      parts += ['<h2>Training</h2>', figure(plot_curves(read_curves(runs_dir.uri),
                                                         path['curves.png']))]

  evaluator = infos.get(tfma_results.EVALUATOR)
  evaluation = next(iter(evaluator.outputs.get('evaluation', [])), None) if evaluator else None
  if evaluation is not None:
    result = tfma_results.load(evaluation.uri)
    classes = model_classes(trainer)
    rows = tfma_results.metrics_by_slice(result, classes, shown=True)
    names = ['example_count', 'binary_accuracy', 'sparse_categorical_accuracy', 'auc',
             'precision', 'recall']
    names += sorted({n for _, m in rows for n in m if '[' in n and not n.endswith('_diff')})
    names = [n for n in names if any(n in m for _, m in rows)]
    header = [tfma_results.readable(n, classes) for n in names]
    rates = dict(tfma_results.slice_rates(result, classes))
    shown_rates = [r for r in ('accuracy', 'false_alarm_rate') if any(
        r in v for v in rates.values())]
    parts += ['<h2>Evaluation (TFMA, test split)</h2>',
              '<p>Every slice: the whole split, each container, class, source (layout and '
              'camera or folder) and duration band. Intervals: 95 % Wilson score, from the '
              "slice's counts (rates at the 0.5 threshold).</p>",
              _table(['slice', *header, *[f'{r} [95 % CI] (k/n)' for r in shown_rates]],
                     [[s, *[m.get(n, '') for n in names],
                       *[rates[s][r].text() if r in rates.get(s, {}) else ''
                         for r in shown_rates]] for s, m in rows])]
    cm = tfma_results.confusion_matrix(result) or tfma_results.multiclass_confusion(result)
    if cm:
      parts.append(figure(plot_confusion(cm, path['confusion.png'],
                                         classes)))
    parts.append(figure(plot_calibration(tfma_results.calibration(result),
                                         path['calibration.png'])))
    ok, failures = tfma_results.validation(evaluation.uri, classes,
                                           config.min_test_examples_per_class)
    overall = dict(rows).get('overall', {})
    diffs = [[n[:-5], overall.get(n[:-5], ''), overall[n]] for n in sorted(overall)
             if n.endswith('_diff')]
    parts.append(f'<h2>Blessing</h2><p><b>{"BLESSED" if ok else "NOT BLESSED"}</b></p>')
    if failures:  # one per failed check, the whole test split's first
      parts.append('<ul>' + ''.join(f'<li>{html.escape(f)}</li>' for f in failures) + '</ul>')
    parts += ['<h2>Candidate against baseline</h2>',
              _table(['metric', 'candidate', 'candidate − baseline'], diffs) if diffs else
              '<p>No baseline (no model pushed before): only the value thresholds '
              'apply.</p>']
  reviewer = infos.get(tfma_results.REVIEWED_EVALUATOR)
  reviewed = next(iter(reviewer.outputs.get('evaluation', [])), None) if reviewer else None
  if reviewed is not None:  # `run --reviewed-clips`: the held-out reviewed clips
    overall = dict(tfma_results.metrics_by_slice(tfma_results.load(reviewed.uri))).get(
        'overall', {})
    ok, failures = tfma_results.validation(reviewed.uri, model_classes(trainer))
    parts += [f'<h2>Reviewed clips (held out): {"gained" if ok else "NOT BLESSED"}</h2>',
              _table(['metric', 'candidate', 'candidate − baseline'],
                     [[n, v, overall.get(f'{n}_diff', '')] for n, v in sorted(overall.items())
                      if not n.endswith('_diff')])]
    if failures:
      parts.append('<ul>' + ''.join(f'<li>{html.escape(f)}</li>' for f in failures) + '</ul>')
  pusher = infos.get('Pusher')
  for artifact in (pusher.outputs.get('pushed_model', []) if pusher else []):
    where = metadata.property_value(artifact, 'pushed_destination')
    parts.append(f'<p>Pushed to {html.escape(str(where))}</p>' if where else
                 '<p>Not pushed.</p>')
  page = path['index.html']
  with open(page, 'w') as f:
    f.write('<!doctype html><meta charset="utf-8"><title>vivit-tfx run report</title>'
            '<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}'
            'table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;'
            'padding:3px 8px;text-align:right}img{max-width:100%;margin:.5em}</style>' +
            '\n'.join(parts))
  folder.done()
  return page
