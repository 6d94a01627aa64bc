"""`vivit-tfx reviews export`: the review page's verdicts → a dataset ingest reads (csv layout).

Each kept verdict (the latest per segment; every missed stretch) becomes one short video cut
from its source (`<stem>-<review>-s01.mp4`, H.264) and one row of `reviews.csv` in the csv
layout of `vivit_tfx.data.layouts` (`path,label,group,split`, then information columns ingest
ignores: `start_s,end_s,verdict,reviewer,time,source`):
  violent      → the positive class (a confirmed alarm)
  not violent  → the negative class: a false alarm, kept as a hard negative
  missed       → the class the reviewer chose
  unsure       → not exported (counted)
`group` is the source video, so every stretch of one video lands in one split. With
`original`, the original dataset's videos (any layout) are listed in the same file with the
same group rule, so `run --videos-dir <out>/reviews.csv --layout csv` trains on both.
Nothing is written outside `out_dir`; names there that vivit-tfx did not write stay untouched
(`vivit_tfx.outputs`).
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vivit_tfx import outputs
from vivit_tfx.data import layouts, synthetic, video_reader
from vivit_tfx.inference import verdicts

CSV_NAME = 'reviews.csv'
COLUMNS = ('path', 'label', 'group', 'split', 'start_s', 'end_s', 'verdict', 'reviewer', 'time',
           'source')


@dataclasses.dataclass
class Summary:
  csv_path: str
  counts: Dict[str, int]  # confirmed, hard negatives, missed, unsure, original
  skipped: List[Tuple[str, str]]  # (what, reason)
  warnings: List[str]

  def to_text(self) -> str:
    c = self.counts
    lines = [f'reviews export: {self.csv_path}: {c["confirmed"]} confirmed alarm(s), '
             f'{c["hard negatives"]} false alarm(s) as hard negatives, {c["missed"]} missed '
             f'stretch(es), {c["original"]} original video(s); {c["unsure"]} unsure not exported'
             f', {len(self.skipped)} skipped']
    lines += [f'  warning: {w}' for w in self.warnings]
    lines += [f'  skipped {what}: {why}' for what, why in self.skipped]
    return '\n'.join(lines)


def _negative(record: Dict[str, Any], negative_class: str) -> Optional[str]:
  """The class a false alarm is labelled with: --negative-class, else the other of a binary set."""
  if negative_class:
    return negative_class
  others = [c for c in record.get('classes', []) if c != record.get('positive_class')]
  return others[0] if len(others) == 1 else None


def label_of(record: Dict[str, Any], negative_class: str = '') -> Tuple[Optional[str], str]:
  """(class name or None, what it is / why not)."""
  if record['kind'] == verdicts.MISSED:
    return record.get('class'), 'missed'
  if record['verdict'] == 'violent':
    return record.get('positive_class') or None, 'confirmed'
  if record['verdict'] == 'not violent':
    negative = _negative(record, negative_class)
    return negative, ('hard negatives' if negative else
                      'no negative class for a multi-class model: pass --negative-class')
  return None, 'unsure'


def cut(source: str, start_s: float, end_s: float, path: str) -> int:
  """Writes frames [start_s, end_s) of `source` to `path` (H.264, its frame rate); the count."""
  info = video_reader.probe(source)
  first = max(0, math.floor(start_s * info.fps))
  indices = list(range(first, min(info.num_frames, max(first + 1, math.ceil(end_s * info.fps)))))
  if not indices:
    raise video_reader.VideoReadError(f'no frames between {start_s} and {end_s} s')
  size = (info.height // 2 * 2, info.width // 2 * 2)  # H.264 (yuv420p) wants even sizes
  synthetic.write_h264(path, (f for _, f in video_reader.iter_frames(source, indices, size)),
                       info.fps)
  return len(indices)


def _clip_names(records: Sequence[Dict[str, Any]]) -> List[str]:
  """`<stem>-<review>-s<segment>.mp4` / `-m<k>.mp4` (the k-th missed stretch of the review)."""
  names, missed = [], {}
  for r in records:
    stem = re.sub(r'[^A-Za-z0-9_-]', '_', os.path.splitext(os.path.basename(r['video']))[0])[:60]
    if r['kind'] == verdicts.MISSED:
      missed[r['job']] = missed.get(r['job'], 0) + 1
      names.append(f'{stem}-{r["job"]}-m{missed[r["job"]]:02d}.mp4')
    else:
      names.append(f'{stem}-{r["job"]}-s{r["segment"]:02d}.mp4')
  return names


def _original_rows(root: str, layout: str) -> Tuple[List[List[str]], List[Tuple[str, str]],
                                                   Tuple[str, ...]]:
  """(csv rows of the original dataset, its skipped files, its classes)."""
  found = layouts.scan(root, layouts.DatasetConfig(layout=layout))
  rows = []
  for c in found.candidates:
    path = os.path.realpath(os.path.join(found.root, c.path))
    split = c.allowed[0] if len(c.allowed) == 1 else ''
    rows.append([path, found.classes[c.label], c.group or path, split] + [''] * 6)
  return rows, [(os.path.join(root, p), why) for p, why in found.skipped], found.classes


def verdict_file(work_dir: str) -> str:
  """`serve`'s verdict file: `work_dir` may be the folder or the file itself."""
  return work_dir if os.path.isfile(work_dir) else os.path.join(work_dir, verdicts.FILE)


def export(work_dir: str, out_dir: str, original: str = '', layout: str = 'auto',
           negative_class: str = '', overwrite: bool = False) -> Summary:
  """Writes the cut clips and `reviews.csv` into `out_dir`; raises ValueError (one line) when
  there is nothing to export or a name in the way is the user's."""
  path = verdict_file(work_dir)
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no verdicts yet (record some on the review page of `serve '
                     '--work-dir`)')
  records, warnings = verdicts.read(path)
  counts = dict.fromkeys(('confirmed', 'hard negatives', 'missed', 'unsure', 'original'), 0)
  rows, skipped = [], []
  classes: Tuple[str, ...] = ()
  if original:
    rows, skipped, classes = _original_rows(original, layout)
    counts['original'] = len(rows)
  wanted = []  # (record, label, what)
  for r in verdicts.latest(records):
    label, what = label_of(r, negative_class)
    where = f'{r.get("video")} ({r.get("job")}, {r["start_s"]}–{r["end_s"]} s)'
    if what == 'unsure':
      counts['unsure'] += 1
    elif label is None:
      skipped.append((where, what))
    elif classes and label not in classes:
      skipped.append((where, f'class {label!r} is not one of the original data\'s classes '
                             f'{", ".join(classes)}'))
    elif not os.path.isfile(r.get('source', '')):
      skipped.append((where, f'source video {r.get("source")!r} is gone'))
    else:
      wanted.append((r, label, what))
  if not wanted and not rows:
    raise ValueError(f'{path}: no verdict to export ({counts["unsure"]} unsure, '
                     f'{len(skipped)} skipped: ' + '; '.join(f'{w}: {y}' for w, y in skipped[:3])
                     + ')')
  folder = outputs.OutputFolder(out_dir, overwrite)
  names = _clip_names([r for r, _, _ in wanted])
  try:
    csv_path, *clip_paths = folder.claim(CSV_NAME, *names)
  except outputs.OutputExists as e:
    raise ValueError(str(e)) from None
  for (r, label, what), name, clip in zip(wanted, names, clip_paths):
    try:
      cut(r['source'], r['start_s'], r['end_s'], clip)
    except (video_reader.VideoReadError, OSError, ValueError) as e:
      skipped.append((f'{r["video"]} ({r["job"]}, {r["start_s"]}–{r["end_s"]} s)',
                      f'cannot be cut ({e})'))
      continue
    counts[what] += 1
    rows.append([name, label, r['source'], '', r['start_s'], r['end_s'], r['verdict'],
                 r.get('reviewer', ''), r.get('time', ''), r['source']])
  with open(csv_path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
  folder.done()
  return Summary(csv_path, counts, skipped, warnings)
