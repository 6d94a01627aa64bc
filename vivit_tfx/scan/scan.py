"""`vivit-tfx scan INPUT --out DIR`: score every video of an archive on Beam, resumably.

The launcher lists the videos, skips those its records say were scored by the same model
(`ledger`), runs the Beam pipeline on the rest (`beam_scan`), then writes `scan.csv` over all
of them (and the files it skipped, with why) and the drift check against the training split
(`drift.json`, one line per drifted feature): the statistics the model carries, else those of
the training split's clips (`--reference`, or found in ML Metadata).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Set

from vivit_tfx import extras, outputs
from vivit_tfx.data import drift_stats
from vivit_tfx.inference import predict, timeline
from vivit_tfx.scan import beam_scan, drift, ledger, options

CSV_NAME = 'scan.csv'
DRIFT_NAME = 'drift.json'
COLUMNS = ('path', 'duration_s', 'top_score', 'flagged_s', 'segments', 'status', 'reason',
           'json', 'png')
# A video's outputs depend on these besides the model and the video (record format: 1).
_SETTINGS_VERSION = 1


class ScanFailed(RuntimeError):
  """The pipeline stopped (a worker's error, a lost runner); the message is one line."""


@dataclasses.dataclass
class Summary:
  listed: int = 0
  scored: int = 0  # by this run
  already: int = 0  # scored by an earlier run with the same model: skipped
  failed: List[Dict[str, str]] = dataclasses.field(default_factory=list)  # path, reason
  ignored: List[str] = dataclasses.field(default_factory=list)  # not a video extension
  hours: float = 0.0  # footage scored, both runs
  drift: List[Dict[str, object]] = dataclasses.field(default_factory=list)
  csv: str = ''


def _claim(out: str) -> Optional[outputs.OutputFolder]:
  """The --out folder with our names claimed (a local folder: `outputs.OutputFolder`, which
  refuses a user's file of the same name); our sub-folders created."""
  names = (CSV_NAME, DRIFT_NAME, ledger.VIDEOS, ledger.STATE)
  if '://' in out:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
    if FileSystems.exists(ledger.join(out, CSV_NAME)) and not FileSystems.exists(
        ledger.join(out, ledger.STATE)):
      raise outputs.OutputExists(f'{ledger.join(out, CSV_NAME)} exists and was not written by '
                                 'a scan: left as it is (choose another --out)')
    return None
  folder = outputs.OutputFolder(out)
  folder.claim(*names)
  for name in (ledger.VIDEOS, ledger.STATE):
    os.makedirs(os.path.join(out, name), exist_ok=True)
  folder.done()  # our folders are ours from now on: a killed scan resumes in them
  return folder


def _listed(config: options.ScanConfig, model: str, window_s: float):
  found = ledger.list_videos(config.input)
  stems = timeline.output_stems([v.path for v in found['videos']])
  settings = (_SETTINGS_VERSION, window_s, config.stride_s, config.threshold)
  videos = [dataclasses.replace(v, stem=stems[v.path]) for v in found['videos']]
  return [dataclasses.replace(v, key=ledger.video_key(v, model, settings)) for v in videos], \
      found['ignored']


def run(config: options.ScanConfig, echo: Callable[[str], None] = print) -> Summary:
  """Scans, writes scan.csv (and drift.json with --reference); returns the counts."""
  # local: Beam (the launcher builds and runs the pipeline)
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  options.check(config)
  extras.require('report')  # the timelines are drawn with matplotlib
  clip = predict.clip_config_of(config.model_dir)
  window_s = timeline.window_s_for(clip, None)
  folder = _claim(config.out)
  model = ledger.model_fingerprint(config.model_dir)
  videos, ignored = _listed(config, model, window_s)
  for name in (ledger.VIDEOS, ledger.STATE):
    ledger.remove_scratch(ledger.join(config.out, name))  # a killed scan's half-written files
  book = ledger.Ledger(config.out)
  todo = [v for v in videos if not book.done(v.key)]
  summary = Summary(listed=len(videos), already=len(videos) - len(todo), ignored=ignored)
  echo(f'scan: {len(videos)} video(s) under {config.input}; {summary.already} already scored '
       f'by this model (skipped), {len(todo)} to score')
  if todo:
    try:
      with beam.Pipeline(options=options.pipeline_options(config)) as p:
        beam_scan.build(p, todo, config.out, config.model_dir, clip, window_s, config.stride_s,
                        config.threshold, config.range_s, config.batch_size, model,
                        config.threads_per_worker)
    except Exception as e:  # pylint: disable=broad-except
      raise ScanFailed(f'the Beam pipeline stopped: {beam_scan.one_line(e)}; the videos it '
                       'finished are kept: run the same command again to resume') from e
  rows, scanned = _tabulate(videos, book, {v.key for v in todo}, summary, echo)
  reference = _reference(config, echo)
  if reference and scanned['score']:
    summary.drift = _drift(dataclasses.replace(config, reference=reference), clip, scanned,
                           model, echo)
    rows += [{'path': '', 'status': 'drift', 'reason': drift_stats.line(e)}
             for e in summary.drift if e['drifted']]
  elif reference:
    echo('drift: not checked (no video was scored)')
  summary.csv = ledger.join(config.out, CSV_NAME)
  text = io.StringIO()
  writer = csv.DictWriter(text, COLUMNS)
  writer.writeheader()
  writer.writerows(rows)
  ledger.write_atomically(summary.csv, text.getvalue().encode('utf-8'))
  if folder:
    folder.done()
  echo(f'scan: {summary.scored} scored now, {summary.already} already scored, '
       f'{len(summary.failed)} failed; {summary.hours:.3f} h of footage; {summary.csv}')
  return summary


def _tabulate(videos: List[ledger.Video], book: ledger.Ledger, fresh: Set[str],
              summary: Summary, echo: Callable[[str], None]):
  """(the CSV's rows, {drift feature: values of every scored window kept}) from the videos'
  records, counting into `summary`; one line per failed video."""
  rows, scanned = [], {f: [] for f in drift_stats.FEATURES}
  for v in videos:
    r = book.read(v.key) or {'status': beam_scan.FAILED, 'reason': 'not scored (no record)'}
    if r['status'] == 'scored':
      summary.scored += v.key in fresh
      summary.hours += r['duration_s'] / 3600
      for f in drift_stats.FEATURES:
        scanned[f] += r['features'][f]
    else:
      summary.failed.append({'path': v.path, 'reason': r['reason']})
      echo(f"{v.path}: skipped: {r['reason']}")
    status = r['status'] if v.key in fresh or r['status'] != 'scored' else 'already scored'
    rows.append({**{c: r.get(c, '') for c in COLUMNS}, 'path': v.path, 'status': status})
  rows += [{'path': p, 'status': 'skipped', 'reason': 'not a video file (extension)'}
           for p in summary.ignored]
  if summary.ignored:
    echo(f'scan: {len(summary.ignored)} file(s) without a video extension ignored (listed in '
         'the CSV)')
  return rows, scanned


def _reference(config: options.ScanConfig, echo: Callable[[str], None]) -> str:
  """What to compare with: --reference CLIPS; with 'auto' the statistics the model carries
  (`drift_stats.reference_path`), else the Examples upstream of the model in ML Metadata; '' (and a
  line saying why) when there are none."""
  if config.reference != 'auto':
    if not config.reference:
      echo('drift: not checked (no --reference: the training clips to compare with)')
    return config.reference
  carried = drift_stats.reference_path(config.model_dir)
  try:
    if drift_stats.model_reference(config.model_dir) is not None:
      echo(f'drift: against the training split statistics the model carries ({carried})')
      return carried
  except ValueError as e:
    echo(f'drift: {beam_scan.one_line(e)}: looking for the training split in ML Metadata')
  else:
    echo(f'drift: the model carries no training split statistics ({drift_stats.REFERENCE_FILE}: '
         'exported before models carried them): computing them from its train split')
  try:
    found = drift.reference_of_model(config.model_dir, config.metadata_path)
  except ValueError as e:
    echo(f'drift: not checked: {beam_scan.one_line(e)} (--reference CLIPS names the training '
         'clips)')
    return ''
  echo(f'drift: against the train split of {found} (the Examples of this model in '
       f'{config.metadata_path})')
  return found


def _reference_statistics(config: options.ScanConfig, clip, model: str):
  """The training split's TFDV statistics: those the model carries, or those of the
  --reference clips, kept in the scan's state folder per model and reference (computed
  once)."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  if config.reference == drift_stats.reference_path(config.model_dir):
    return drift_stats.model_reference(config.model_dir)
  where = config.reference if '://' in config.reference else os.path.abspath(config.reference)
  key = hashlib.sha256(json.dumps([model, where, config.reference_max_clips]).encode()
                       ).hexdigest()[:16]
  path = ledger.join(config.out, ledger.STATE, f'reference-{key}.stats.pbtxt')
  if not FileSystems.exists(path):
    stats = drift_stats.statistics(drift.reference_features(
        config.reference, config.model_dir, clip, config.reference_max_clips))
    ledger.write_atomically(path, text_format.MessageToString(stats).encode('utf-8'))
  return tfdv.load_stats_text(path)


def _drift(config: options.ScanConfig, clip, scanned: Dict[str, List[float]], model: str,
           echo: Callable[[str], None]) -> List[Dict[str, object]]:
  """TFDV drift of the scanned clips' features against the training split's; drift.json."""
  try:
    reference = _reference_statistics(config, clip, model)
  except (ValueError, OSError) as e:
    echo(f'drift: not checked: {e}')
    return []
  entries = drift_stats.compare(drift_stats.statistics(scanned), reference, config.drift_threshold)
  for e in entries:
    if e['drifted']:
      echo(drift_stats.line(e))
  if not any(e['drifted'] for e in entries):
    echo(f'drift: none above Jensen-Shannon divergence {config.drift_threshold:g} '
         f'({len(scanned["score"])} clips against the training split)')
  ledger.write_atomically(ledger.join(config.out, DRIFT_NAME), json.dumps(
      {'reference': config.reference, 'clips': len(scanned['score']),
       'comparator': 'jensen_shannon_divergence', 'features': entries}, indent=1).encode())
  return entries


def main(config: options.ScanConfig) -> int:
  """The CLI's entry: exit 1 when a video was skipped."""
  logging.getLogger('apache_beam').setLevel(logging.ERROR)  # its workers' start-up warnings
  summary = run(config,
                echo=lambda line: print(line, file=sys.stderr if ': skipped: ' in line
                                        else sys.stdout))
  return 1 if summary.failed else 0
