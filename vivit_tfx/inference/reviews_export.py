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
same group rule and the split ingest's defaults give them, so `run --videos-dir
<out>/reviews.csv --layout csv` trains on both and tests on the first run's test videos.
The split of every reviewed stretch is fixed (`_pin_splits`): a share of the reviewed source
videos per class (`held_out`) is held out, never trained on, and written only to
`held-out.csv`, the clips `run --reviewed-clips` compares the candidate with the last pushed
model on (after `vivit-tfx ingest`); the rest go to `train` in `reviews.csv`. The stretches of
an original video take its split, and those of an original test video are held out too, so
the next run's test split is the original one: its blessing asks for no loss there and for a
gain on the held-out stretches.
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
from vivit_tfx.data import ingest, layouts, synthetic, video_reader
from vivit_tfx.inference import verdicts

CSV_NAME = 'reviews.csv'
HELD_OUT_NAME = 'held-out.csv'
HELD_OUT = 0.3  # share of the reviewed source videos (per class) held out for the blessing
SPLITS = ingest.SplitConfig()  # ingest's default shares and seed
COLUMNS = ('path', 'label', 'group', 'split', 'start_s', 'end_s', 'verdict', 'reviewer', 'time',
           'source')


@dataclasses.dataclass
class Summary:
  csv_path: str
  counts: Dict[str, int]  # confirmed, hard negatives, missed, unsure, original, held out
  skipped: List[Tuple[str, str]]  # (what, reason)
  warnings: List[str]
  classes: Tuple[str, ...] = ()  # the reviewed model's, in label order

  def next_steps(self) -> str:
    """The commands that make `held-out.csv` the clips of `run --reviewed-clips`."""
    folder = os.path.dirname(self.csv_path)
    clips = folder.rstrip(os.sep) + '-clips'
    return (f'vivit-tfx ingest --input {os.path.join(folder, HELD_OUT_NAME)} --layout csv '
            f'--classes {",".join(self.classes)} --output {clips}, then `run` with '
            f'--reviewed-clips {clips}')

  def to_text(self) -> str:
    c = self.counts
    lines = [f'reviews export: {self.csv_path}: {c["confirmed"]} confirmed alarm(s), '
             f'{c["hard negatives"]} false alarm(s) as hard negatives, {c["missed"]} missed '
             f'stretch(es), {c["original"]} original video(s); {c["unsure"]} unsure not exported'
             f', {len(self.skipped)} skipped',
             f'  held out (never trained on, not in {CSV_NAME}): {c["held out"]} stretch(es), '
             f'in {os.path.join(os.path.dirname(self.csv_path), HELD_OUT_NAME)}']
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
  """(csv rows of the original dataset, its skipped files, its classes). Each video's split is
  the one `ingest` gives it with its default shares and seed (so the second run tests on the
  first run's test videos)."""
  found = layouts.scan(root, layouts.DatasetConfig(layout=layout))
  split_of = layouts.assign_splits(found.candidates, SPLITS.fractions(), SPLITS.seed)
  rows = []
  for c in found.candidates:
    path = os.path.realpath(os.path.join(found.root, c.path))
    rows.append([path, found.classes[c.label], c.group or path, split_of[c.video_id]] +
                [''] * 6)
  return rows, [(os.path.join(root, p), why) for p, why in found.skipped], found.classes


def _pin_splits(rows: List[List[Any]], first: int, held_out: float) -> int:
  """Fixes the split of the reviewed rows (`rows[first:]`): per class, `held_out` of the source
  videos → test, the rest → train (group-safe, `layouts.assign_splits`); the stretches of an
  original video (`rows[:first]`, their splits set) take its split. The number held out."""
  reviewed = rows[first:]
  split_of = {row[2]: row[3] for row in rows[:first] if row[3]}  # group → its split
  free = [row for row in reviewed if row[2] not in split_of]
  labels = sorted({row[1] for row in free})
  candidates = [layouts.Candidate(row[0], labels.index(row[1]), row[2]) for row in free]
  assigned = layouts.assign_splits(
      candidates, {'train': 1.0 - held_out, 'eval': 0.0, 'test': held_out}, SPLITS.seed)
  split_of.update((c.group, assigned[c.video_id]) for c in candidates)
  for row in rows:
    row[3] = row[3] or split_of.get(row[2], '')
  return sum(row[3] == 'test' for row in reviewed)


def verdict_file(work_dir: str) -> str:
  """`serve`'s verdict file: `work_dir` may be the folder or the file itself."""
  return work_dir if os.path.isfile(work_dir) else os.path.join(work_dir, verdicts.FILE)


def export(work_dir: str, out_dir: str, original: str = '', layout: str = 'auto',
           negative_class: str = '', overwrite: bool = False,
           held_out: float = HELD_OUT) -> Summary:
  """Writes the cut clips, `reviews.csv` and `held-out.csv` into `out_dir`; raises ValueError
  (one line) when there is nothing to export or a name in the way is the user's."""
  if not 0.0 <= held_out < 1.0:
    raise ValueError(f'--held-out {held_out}: expected a share within [0, 1)')
  path = verdict_file(work_dir)
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no verdicts yet (record some on the review page of `serve '
                     '--work-dir`)')
  records, warnings = verdicts.read(path)
  counts = dict.fromkeys(('confirmed', 'hard negatives', 'missed', 'unsure', 'original',
                          'held out'), 0)
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
    csv_path, held_out_path, *clip_paths = folder.claim(CSV_NAME, HELD_OUT_NAME, *names)
  except outputs.OutputExists as e:
    raise ValueError(str(e)) from None
  first = len(rows)
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
  counts['held out'] = _pin_splits(rows, first, held_out)
  if rows[first:] and not counts['held out']:
    warnings.append(f'no reviewed video held out ({len({r[2] for r in rows[first:]})} source '
                    'video(s)): `run --reviewed-clips` needs one; review more videos')
  reviewed = rows[first:]
  # the held-out stretches only in held-out.csv: the next run's test split stays the original
  # one, on which its blessing asks for no loss (the gain is asked on them, `--reviewed-clips`)
  for path, kept in ((csv_path, rows[:first] + [r for r in reviewed if r[3] != 'test']),
                     (held_out_path, [r for r in reviewed if r[3] == 'test'])):
    with open(path, 'w', newline='', encoding='utf-8') as f:
      writer = csv.writer(f)
      writer.writerow(COLUMNS)
      writer.writerows(kept)
  folder.done()
  model_classes = next((tuple(r['classes']) for r, _, _ in wanted if r.get('classes')), ())
  return Summary(csv_path, counts, skipped, warnings, model_classes or classes)
