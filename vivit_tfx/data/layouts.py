"""Dataset layouts: which files of an input are labelled videos, their class, group and split.

Layouts (`DatasetConfig.layout`; `auto` detects, an explicit layout wins):
  rlvs      Violence/, NonViolence/ (also nested one folder deeper, as the Kaggle archive is)
  rwf2000   {train,val}/{Fight,NonFight}/<youtubeID>_<k>.avi: val is the test split, eval is
            carved out of train; group = file stem without its last `_<k>`
  hockey    one flat folder of fi*.avi (fight) / no*.avi (non-fight)
  folders   any set of class folders, one class each (multi-class)
  csv       a file of `path,label[,group][,split]` rows (paths relative to the file)
  unlabeled every video anywhere below the folder, labels ignored (pre-training footage):
            one class, all in the train split; never detected by `auto`
The class list is data: `Scan.classes`, in label order (the positive class of a binary set is
label 1). Only the RLVS layout (and the synthetic generator) names classes.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from vivit_tfx.data import remote_files, video_reader

LAYOUTS = ('auto', 'rlvs', 'rwf2000', 'hockey', 'folders', 'csv', 'unlabeled')
UNLABELED_CLASS = 'unlabeled'
SPLITS = ('train', 'eval', 'test')
RLVS_CLASSES = ('NonViolence', 'Violence')
FIGHT_CLASSES = ('NonFight', 'Fight')
_SPLIT_NAMES = {'train': 'train', 'eval': 'eval', 'val': 'eval', 'valid': 'eval',
                'validation': 'eval', 'test': 'test'}


class LayoutError(ValueError):
  """The input does not fit the layout or the class settings (one-line message)."""


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """How the input is read: layout, class order, positive class, grouping of related videos."""
  layout: str = 'auto'
  classes: Tuple[str, ...] = ()      # label order; default: the layout's (sorted for folders)
  positive_class: str = ''           # binary sets: this class is label 1
  group_regex: str = ''              # on the relative path; group 1 (or the match) is the group


@dataclasses.dataclass
class Candidate:
  """An input file that looks like a labelled video."""
  path: str  # relative to the input root
  label: int
  group: str = ''  # videos of one group never land in two splits ('' = the video itself)
  allowed: Tuple[str, ...] = SPLITS  # splits this video may go to (official partitions)
  source: str = ''  # evaluation slice: `source_of` (set by `scan`)

  @property
  def video_id(self) -> str:
    return os.path.splitext(self.path)[0]

  @property
  def group_id(self) -> str:
    return self.group or self.video_id


@dataclasses.dataclass
class Scan:
  """What a layout found: the folder paths are relative to, candidates, skipped files."""
  root: str
  layout: str
  classes: Tuple[str, ...]
  candidates: List[Candidate]
  skipped: List[Tuple[str, str]]  # (relative path, reason)
  warnings: List[str]


# ---------------------------------------------------------------- listing and detection


# Local folders through os (symlinks seen as such); URIs (gs://, ram://, …) through tf.io.gfile.
def _isdir(path: str) -> bool:
  return remote_files.isdir(path) if not remote_files.is_local(path) else os.path.isdir(path)


def _isfile(path: str) -> bool:
  if remote_files.is_local(path):
    return os.path.isfile(path)
  return remote_files.exists(path) and not remote_files.isdir(path)


def _islink(path: str) -> bool:
  return remote_files.is_local(path) and os.path.islink(path)


def _walk_tree(root: str):
  if remote_files.is_local(root):
    yield from os.walk(root, followlinks=False)
    return
  for dirpath, dirnames, filenames in remote_files.gfile().walk(root):
    yield dirpath, [d.rstrip('/') for d in dirnames], filenames


def _listdir(path: str) -> Tuple[List[str], List[str]]:
  """(visible sub-folders, visible files) of a folder, sorted; links to folders not counted."""
  entries = os.listdir(path) if remote_files.is_local(path) else remote_files.listdir(path)
  names = sorted(n for n in entries if not n.startswith('.'))
  dirs = [n for n in names if _isdir(os.path.join(path, n)) and
          not _islink(os.path.join(path, n))]
  return dirs, [n for n in names if n not in dirs]


def _is_video(name: str) -> bool:
  return name.lower().endswith(video_reader.VIDEO_EXTENSIONS)


def _lower(names: Sequence[str]) -> Dict[str, str]:
  return {n.lower(): n for n in names}


def _looks_rlvs(path: str) -> bool:
  return bool({c.lower() for c in RLVS_CLASSES} & set(_lower(_listdir(path)[0])))


def _looks_rwf2000(path: str) -> bool:
  dirs = _lower(_listdir(path)[0])
  if 'train' not in dirs or 'val' not in dirs:
    return False
  inner = _lower(_listdir(os.path.join(path, dirs['train']))[0])
  return bool({c.lower() for c in FIGHT_CLASSES} & set(inner))


def _looks_hockey(path: str, strict: bool = True) -> bool:
  """A flat folder of fi*/no* videos (not strict: some of them, others are skipped)."""
  dirs, files = _listdir(path)
  named = [f.lower().startswith(('fi', 'no')) for f in files if _is_video(f)]
  return not dirs and any(named) and (all(named) or not strict)


def csv_file(path: str) -> Optional[str]:
  if _isfile(path) and path.lower().endswith('.csv'):
    return path
  if _isdir(path):  # a folder holding one CSV (and no videos) beside its folders
    files = _listdir(path)[1]
    csvs = [f for f in files if f.lower().endswith('.csv')]
    if len(csvs) == 1 and not any(_is_video(f) for f in files):
      return os.path.join(path, csvs[0])
  return None


_DETECTORS: List[Tuple[str, Callable[[str], bool]]] = [
    ('rwf2000', _looks_rwf2000), ('rlvs', _looks_rlvs), ('hockey', _looks_hockey)]


def _base(root: str, looks: Callable[[str], bool]) -> Optional[str]:
  """`root`, or its only sub-folder (archives nest one level deeper), if it has the layout."""
  if looks(root):
    return root
  dirs, files = _listdir(root)
  if len(dirs) == 1 and not any(_is_video(f) for f in files):
    inner = os.path.join(root, dirs[0])
    if looks(inner):
      return inner
  return None


def detect(root: str) -> str:
  """The layout of `root`: a CSV file, else rwf2000, rlvs, hockey, a folder with one CSV, else
  folders."""
  if _isfile(root) and csv_file(root):
    return 'csv'
  if not _isdir(root):
    raise FileNotFoundError(f'{root}: input folder does not exist')
  for name, looks in _DETECTORS:
    if _base(root, looks):
      return name
  return 'csv' if csv_file(root) else 'folders'


# ---------------------------------------------------------------- classes


def _negative_first(names: Sequence[str]) -> Tuple[str, ...]:
  """A binary pair with the 'no'/'non' class first (NonFight before Fight); else as given."""
  a, b = names
  for neg, pos in ((a, b), (b, a)):
    stripped = re.sub(r'^(non|no|not)[-_ ]?', '', neg.lower())
    if stripped != neg.lower() and stripped == pos.lower():
      return (neg, pos)
  return tuple(names)


def class_order(found: Sequence[str], config: DatasetConfig,
                default: Sequence[str] = ()) -> Tuple[str, ...]:
  """Label order: --classes, else the layout's default, else sorted; positive class last."""
  if config.classes:
    classes = tuple(config.classes)
  elif default:
    classes = tuple(default)
  else:
    classes = tuple(sorted(set(found)))
    if len(classes) == 2:
      classes = _negative_first(classes)
  if len(set(classes)) != len(classes):
    raise LayoutError(f'classes {",".join(classes)}: a class is listed twice')
  if config.positive_class:
    if config.positive_class not in classes:
      raise LayoutError(f'positive class {config.positive_class!r} is not one of the classes '
                        f'{", ".join(classes)}')
    if len(classes) == 2:
      classes = tuple(c for c in classes if c != config.positive_class) + (
          config.positive_class,)
  return classes


# ---------------------------------------------------------------- scanning


def _walk(root: str, skipped: List[Tuple[str, str]]) -> List[str]:
  """Every file under root (relative paths, sorted); symlinked folders are listed as skipped."""
  out = []
  for dirpath, dirnames, filenames in _walk_tree(root):
    dirnames.sort()
    rel_dir = os.path.relpath(dirpath, root)
    for d in dirnames:
      if _islink(os.path.join(dirpath, d)):
        skipped.append((os.path.normpath(os.path.join(rel_dir, d)),
                        'symlinked folder, not followed'))
    out.extend(os.path.normpath(os.path.join(rel_dir, f)) for f in sorted(filenames))
  return sorted(out)


# A layout's rule for one file: relative path → (class name, allowed splits) or a reason.
_Rule = Callable[[str], Union[Tuple[str, Tuple[str, ...]], str]]


def _class_folder_rule(classes: Sequence[str], depth: int = 0) -> _Rule:
  by_lower = _lower(classes)

  def rule(rel):
    parts = rel.split(os.sep)
    if len(parts) < depth + 2:
      return f'not inside a class folder (expected {" or ".join(classes)})'
    name = by_lower.get(parts[depth].lower())
    if name is None:
      return f'unknown class folder {parts[depth]!r} (expected {" or ".join(classes)})'
    return name, SPLITS
  return rule


def _rwf2000_rule(rel):
  parts = rel.split(os.sep)
  if len(parts) < 3 or parts[0].lower() not in ('train', 'val'):
    return 'not inside train/<class>/ or val/<class>/'
  name = _lower(FIGHT_CLASSES).get(parts[1].lower())
  if name is None:
    return f'unknown class folder {parts[1]!r} (expected {" or ".join(FIGHT_CLASSES)})'
  return name, (('train', 'eval') if parts[0].lower() == 'train' else ('test',))


def _hockey_rule(rel):
  name = os.path.basename(rel).lower()
  if os.sep in rel:
    return 'not in the flat folder of a Hockey Fights layout'
  if name.startswith('fi'):
    return 'Fight', SPLITS
  if name.startswith('no'):
    return 'NonFight', SPLITS
  return "file name starts with neither 'fi' (fight) nor 'no' (non-fight)"


def _rwf2000_group(rel: str) -> str:
  stem = os.path.splitext(os.path.basename(rel))[0]
  return re.sub(r'_\d+$', '', stem)


def group_of(rel: str, config: DatasetConfig, layout: str) -> str:
  """The group of a video: --group-regex on its relative path, else the layout's rule."""
  if config.group_regex:
    match = re.search(config.group_regex, rel)
    if match:
      return match.group(1) if match.re.groups else match.group(0)
    return ''
  return _rwf2000_group(rel) if layout == 'rwf2000' else ''


def source_of(rel: str, layout: str, classes: Sequence[str] = ()) -> str:
  """Where a video comes from, for evaluation slices: the layout, then the folders of its path
  that name neither a class nor a split (a camera or site folder, where the dataset has one):
  'rlvs', 'rlvs/cam1', 'csv/cam1/day2'."""
  skip = {c.lower() for c in classes} | set(_SPLIT_NAMES)
  folders = [p for p in os.path.dirname(rel).replace(os.sep, '/').split('/')
             if p and p.lower() not in skip]
  return '/'.join([layout, *folders])


def scan(root: str, config: DatasetConfig = DatasetConfig()) -> Scan:
  """Lists the input with its layout; every file is a candidate or skipped with a reason."""
  if config.layout not in LAYOUTS:
    raise LayoutError(f'unknown layout {config.layout!r} (expected one of {", ".join(LAYOUTS)})')
  if config.group_regex:
    try:
      re.compile(config.group_regex)
    except re.error as e:
      raise LayoutError(f'--group-regex {config.group_regex!r}: {e}') from None
  layout = detect(root) if config.layout == 'auto' else config.layout
  if layout == 'csv':
    return _scan_csv(root, config)
  if not _isdir(root):
    raise FileNotFoundError(f'{root}: input folder does not exist')
  skipped: List[Tuple[str, str]] = []
  files = _walk(root, skipped)
  prefix = ''
  looks = dict(_DETECTORS).get(layout)
  if layout == 'hockey':
    looks = lambda path: _looks_hockey(path, strict=False)
  if looks is not None:
    base = _base(root, looks)
    if base is None:
      raise LayoutError(f'{root} does not have the {layout} layout (see --layout)')
    prefix = os.path.relpath(base, root)
    prefix = '' if prefix == '.' else prefix + os.sep
  inner = lambda rel: rel[len(prefix):] if rel.startswith(prefix) else None
  if layout == 'rlvs':
    default, rule = RLVS_CLASSES, _class_folder_rule(RLVS_CLASSES)
  elif layout == 'rwf2000':
    default, rule = FIGHT_CLASSES, _rwf2000_rule
  elif layout == 'hockey':
    default, rule = FIGHT_CLASSES, _hockey_rule
  elif layout == 'unlabeled':
    default, rule = (UNLABELED_CLASS,), lambda rel: (UNLABELED_CLASS, ('train',))
  else:  # folders: every top folder holding a video is a class
    found = sorted({f.split(os.sep)[0] for f in files if os.sep in f and _is_video(f)})
    default, rule = (), _class_folder_rule(config.classes or found)
  raw: List[Tuple[str, str, Tuple[str, ...]]] = []
  for rel in files:
    rel_inner = inner(rel)
    verdict = rule(rel_inner) if rel_inner is not None else 'outside the dataset folder'
    if isinstance(verdict, str):
      skipped.append((rel, verdict))
    elif not _is_video(rel):
      skipped.append((rel, f'unsupported extension {os.path.splitext(rel)[1] or "(none)"!r}'))
    else:
      raw.append((rel, verdict[0], verdict[1]))
  classes = class_order([c for _, c, _ in raw] if layout == 'folders' else default, config,
                        default if not config.classes and layout != 'folders' else ())
  return _finish(root, layout, classes, raw, skipped, config)


def _finish(root, layout, classes, raw, skipped, config) -> Scan:
  label = {c: i for i, c in enumerate(classes)}
  candidates, warnings = [], []
  for rel, name, allowed in raw:
    if name not in label:
      skipped.append((rel, f'class {name!r} is not one of the classes {", ".join(classes)}'))
      continue
    candidates.append(Candidate(rel, label[name], group_of(rel, config, layout), allowed,
                                source_of(rel, layout, classes)))
  seen = collections.Counter(c.label for c in candidates)
  for i, name in enumerate(classes):
    if not seen[i]:
      warnings.append(f'class {name!r} has no video files')
  if len(classes) < 2 and layout != 'unlabeled':
    warnings.append(f'only {len(classes)} class found: a classifier needs at least 2')
  return Scan(root, layout, tuple(classes), candidates, sorted(skipped), warnings)


def _scan_csv(path: str, config: DatasetConfig) -> Scan:
  csv_path = csv_file(path)
  if csv_path is None:
    raise FileNotFoundError(f'{path}: no CSV file of path,label[,group][,split] rows')
  root = os.path.dirname(os.path.abspath(csv_path))
  with open(csv_path, newline='') as f:
    rows = [r for r in csv.reader(f) if r and any(x.strip() for x in r)]
  if rows and [x.strip().lower() for x in rows[0][:2]] == ['path', 'label']:
    rows = rows[1:]
  raw, skipped = [], []
  for n, row in enumerate(rows, 1):
    row = [x.strip() for x in row] + ['', '']
    rel, name, group, split = os.path.normpath(row[0]), row[1], row[2], row[3].lower()
    if not row[0] or not name:
      skipped.append((row[0] or f'{os.path.basename(csv_path)} row {n}',
                      'row without a path and a label'))
    elif split and split not in _SPLIT_NAMES:
      skipped.append((rel, f'unknown split {split!r} (expected train, eval/val or test)'))
    elif not _is_video(rel):
      skipped.append((rel, f'unsupported extension {os.path.splitext(rel)[1] or "(none)"!r}'))
    else:
      raw.append((rel, name, (_SPLIT_NAMES[split],) if split else SPLITS, group))
  classes = class_order([r[1] for r in raw], config)
  scan_ = _finish(root, 'csv', classes, [r[:3] for r in raw], skipped, config)
  groups = {r[0]: r[3] for r in raw}
  for c in scan_.candidates:
    c.group = c.group or groups.get(c.path, '')
  return scan_


# ---------------------------------------------------------------- splits


def _rank(seed: int, key: str) -> str:
  return hashlib.sha1(f'{seed}:{key}'.encode()).hexdigest()


def assign_splits(candidates: Sequence[Candidate], fractions: Dict[str, float],
                  seed: int) -> Dict[str, str]:
  """Deterministic, group-safe split per video, stratified by class: video_id → split.

  Groups (all videos sharing a group id) are the unit: a group takes the class of most of its
  videos and the splits its videos allow (an official partition); within each (class, allowed
  splits) stratum groups are ordered by a seeded hash of their id and each goes to the split
  furthest below its share. Every allowed split gets a group of the class when there are ≥ 3.
  """
  groups: Dict[Tuple[str, Tuple[str, ...]], List[Candidate]] = collections.defaultdict(list)
  for c in candidates:  # an official partition wins over a group that crosses it
    groups[(c.group_id, c.allowed)].append(c)
  strata: Dict[Tuple[int, Tuple[str, ...]], List] = collections.defaultdict(list)
  for key, members in groups.items():
    label = collections.Counter(m.label for m in members).most_common(1)[0][0]
    strata[(label, key[1])].append(key)
  out = {}
  for (_, allowed), gids in sorted(strata.items()):
    share = {s: fractions[s] for s in allowed}
    total = sum(share.values()) or 1.0
    n = sum(len(groups[g]) for g in gids)
    # Videos per split: rounded shares; with enough groups every split with a share gets one;
    # the first allowed split (train) takes the rest.
    target = {s: round(n * share[s] / total) for s in allowed[1:]}
    if len(gids) >= len(allowed):
      target = {s: max(t, 1) if share[s] else t for s, t in target.items()}
    target[allowed[0]] = max(n - sum(target.values()), 0)
    taken = dict.fromkeys(allowed, 0)
    for gid in sorted(gids, key=lambda g: _rank(seed, g[0])):
      # The split furthest below its target; ties go to the earlier split (train first).
      split = max(allowed, key=lambda s: (target[s] - taken[s], -allowed.index(s)))
      if share[split] == 0:
        split = next(s for s in allowed if share[s])
      taken[split] += len(groups[gid])
      for m in groups[gid]:
        out[m.video_id] = split
  return out
