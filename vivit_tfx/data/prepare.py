"""A run's first step: the clips the pipeline reads, made from the run's videos with its settings.

Synthetic videos are written only at the default videos folder; existing clips are used only
when their marker names the same input and settings; otherwise the run stops with the command
that re-ingests, or (with --overwrite) re-ingests over an output that holds only ingest's files.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Dict, List, Optional, Protocol, Sequence

from vivit_tfx.data import ingest, ingest_output, layouts, remote_files, synthetic


class DataSettings(Protocol):
  """What data preparation reads of a run's settings (a `pipeline.configs.PipelineConfig`
  has it)."""
  videos_dir: str
  clips_dir: str
  input_mode: str  # 'tfrecords': the pipeline reads ingested clips; 'videos': the videos
  overwrite: bool
  synthetic_clips: int
  unlabeled_videos: str
  unlabeled_clips: str
  videos_dir_is_default: bool  # the only folder synthetic videos may be written to

  def clip_config(self) -> ingest.ClipConfig: ...

  def dataset_config(self) -> ingest.DatasetConfig: ...

  def ingest_command(self, videos_dir: str) -> str:
    """The `vivit-tfx ingest` command that makes the clips these settings want."""

  def blessing_warnings(self, clips: Dict[str, Dict[str, int]], classes: Sequence[str],
                        test_share: float) -> List[str]:
    """One line per class whose splits cannot meet the blessing's minimums."""


class DataError(ValueError):
  """The data the settings name is missing or does not match them; nothing was touched."""


@dataclasses.dataclass(frozen=True)
class DataPlan:
  """What `prepare_data` will do: the videos folder it reads, and whether it uses the clips as
  they are (made: their marker), writes synthetic videos first, and (re-)ingests."""
  videos_dir: str
  use_clips: bool = False
  made: Optional[ingest_output.Provenance] = None
  synthetic: bool = False
  ingest: bool = False


# `run`'s options naming ingest's output and allowing its replacement (ingest: --output).
_RUN_FLAGS = ('--clips-dir', '--overwrite true')


def _ingest_settings(settings: DataSettings) -> dict:
  """The `ingest.ingest` settings a run uses (and checks existing clips against)."""
  return dict(clip=settings.clip_config(), dataset=settings.dataset_config())


def check_data(settings: DataSettings) -> DataPlan:
  """Read-only: what `prepare_data` will do, or DataError (one line) when it must not."""
  videos_dir = settings.videos_dir
  clips_made = ingest_output.read_provenance(settings.clips_dir)
  reads_clips = settings.input_mode == 'tfrecords'
  if (reads_clips and settings.videos_dir_is_default and clips_made is not None
      and clips_made.input_root != os.path.realpath(videos_dir)):
    videos_dir = clips_made.input_root  # no --videos-dir given: the clips' own input is the data
  # `run` has no split or shard options: clips ingested with other ones are this data's clips.
  own = {k: clips_made.settings[k] for k in ('splits', 'clips_per_shard')
         if clips_made is not None and k in clips_made.settings}
  wanted = ingest_output.provenance_for(videos_dir, **_ingest_settings(settings), **own)
  if reads_clips and clips_made is not None and clips_made.fingerprint == wanted.fingerprint:
    _check_splits(_summary(settings.clips_dir), settings.clips_dir,
                  're-ingest them (run --overwrite true)')
    return DataPlan(videos_dir, use_clips=True, made=clips_made)
  missing = not remote_files.exists(videos_dir)
  if missing and (videos_dir != settings.videos_dir or not settings.videos_dir_is_default):
    raise DataError(f'{videos_dir}: videos folder does not exist (nothing was written; '
                    'check --videos-dir)')
  if not reads_clips:
    return DataPlan(videos_dir, synthetic=missing)
  if clips_made is not None and not settings.overwrite:
    raise DataError(
        f'{settings.clips_dir}: clips were made from other input or settings ('
        + '; '.join(ingest_output.differences(clips_made, wanted)[:4])
        + f'); nothing was changed. Re-ingest with: {settings.ingest_command(videos_dir)}'
        ' (or pass --overwrite true to `run`, or choose another --clips-dir)')
  try:
    ingest_output.check_target(videos_dir, settings.clips_dir, wanted, settings.overwrite,
                               _RUN_FLAGS)
  except ingest_output.OutputError as e:
    raise DataError(str(e)) from None
  if not missing:
    _check_splits(planned_splits(videos_dir, settings.dataset_config()), videos_dir,
                  'run again')
  return DataPlan(videos_dir, synthetic=missing, ingest=True)


def planned_splits(videos_dir: str, dataset: ingest.DatasetConfig) -> ingest.IngestSummary:
  """The clips per split and class, and the classes, that ingesting `videos_dir` with the
  run's splits gives when every video decodes: a listing, nothing is read or written."""
  try:
    found = layouts.scan(videos_dir, dataset)
  except (ValueError, OSError) as e:
    raise DataError(str(e)) from None
  split_of = ingest.assign_splits(found.candidates, ingest.SplitConfig())
  clips = {s: collections.Counter() for s in ingest.SPLITS}
  for c in found.candidates:
    clips[split_of[c.video_id]][found.classes[c.label]] += 1
  return ingest.IngestSummary(clips={s: dict(n) for s, n in clips.items()},
                              classes=list(found.classes))


def _summary(clips_dir: str) -> ingest.IngestSummary:
  """The clips' ingest summary; an empty one when there is none to read."""
  try:
    return ingest.IngestSummary.read(clips_dir)
  except (OSError, ValueError, TypeError):
    return ingest.IngestSummary()


def _check_splits(summary: ingest.IngestSummary, where: str, then: str) -> None:
  """DataError when the eval or test split is (or would be) empty: the Trainer validates
  on eval, the Evaluator blesses on test, and TFX fails late on a split without files."""
  clips, classes = summary.clips, summary.classes
  if not clips:
    return
  sizes = [sum(clips.get(s, {}).values()) for s in ingest.SPLITS]
  empty = [s for s, n in zip(ingest.SPLITS, sizes) if not n]
  if not empty:
    return
  totals = {c: sum(clips.get(s, {}).get(c, 0) for s in ingest.SPLITS) for c in classes}
  short = ', '.join(f'{c} has {n}' for c, n in totals.items() if n < 3)
  raise DataError(
      f'{where}: {sum(sizes)} video(s) split '
      f'{"/".join(map(str, sizes))} (train/eval/test): the {" and ".join(empty)} split'
      f'{"s have" if len(empty) > 1 else " has"} no video (the Trainer validates on eval, the '
      f'Evaluator blesses on test); nothing was written. Add videos so that every class has '
      f'at least 3, one per split ({short or "groups of --group-regex count once"}), then '
      f'{then}')


def prepare_data(settings: DataSettings, progress: bool = True) -> None:
  """Makes sure the clips the pipeline reads were made from the videos with these settings
  (`check_data` says how), writing synthetic videos and ingesting as needed."""
  plan = check_data(settings)
  if plan.use_clips:
    print(f'[run] using clips in {settings.clips_dir} (ingested from {plan.made.input_root})')
    warn_splits(settings)
    return
  if plan.synthetic:
    print(f'[run] {plan.videos_dir} absent: writing {settings.synthetic_clips} synthetic videos')
    synthetic.generate(plan.videos_dir,
                       synthetic.SyntheticConfig(num_clips=settings.synthetic_clips),
                       progress=progress)
  if not plan.ingest:
    return
  _ingest(plan.videos_dir, settings.clips_dir, settings.overwrite, progress, '',
          **_ingest_settings(settings))
  warn_splits(settings)


def prepare_unlabeled(settings: DataSettings, progress: bool = True) -> None:
  """Ingests --unlabeled-videos (any layout, labels ignored, all to the train split) into
  `settings.unlabeled_clips`, unless the clips there were made from the same input and
  settings."""
  if not settings.unlabeled_videos:
    return
  wanted_settings = dict(clip=settings.clip_config(),
                         dataset=ingest.DatasetConfig(layout='unlabeled'),
                         splits=ingest.TRAIN_ONLY)
  made = ingest_output.read_provenance(settings.unlabeled_clips)
  wanted = ingest_output.provenance_for(settings.unlabeled_videos, **wanted_settings)
  if made is not None and made.fingerprint == wanted.fingerprint:
    print(f'[run] using unlabelled clips in {settings.unlabeled_clips}')
    return
  _ingest(settings.unlabeled_videos, settings.unlabeled_clips, settings.overwrite, progress,
          '--unlabeled-videos: ', flags=('--unlabeled-clips-dir', _RUN_FLAGS[1]),
          **wanted_settings)


def _ingest(videos: str, clips: str, overwrite: bool, progress: bool, what: str,
            flags=None, **settings) -> None:
  """Ingests `videos` into `clips` and prints the summary; a failure is a DataError whose
  line starts with `what` (the option that named the videos, or '')."""
  try:
    result = ingest_output.ingest_into(videos, clips, overwrite=overwrite, progress=progress,
                                       flags=flags or _RUN_FLAGS, **settings)
  except ingest_output.NothingUsable as e:
    print(e.summary.to_text())
    raise DataError(f'{what}{e}') from None
  except (ingest_output.OutputError, FileNotFoundError) as e:
    raise DataError(f'{what}{e}') from None
  print(result.to_text())


def warn_splits(settings: DataSettings) -> List[str]:
  """Before training: one line per class whose ingested splits cannot meet the run's
  blessing minimums (printed, and returned)."""
  summary = _summary(settings.clips_dir)
  if not summary.clips:
    return []
  made = ingest_output.read_provenance(settings.clips_dir)
  test_share = (made.settings.get('splits') or {}).get('test') if made else None
  lines = settings.blessing_warnings(summary.clips, summary.classes,
                                     test_share or ingest.SplitConfig().test)
  for line in lines:
    print(f'[run] warning: {line}')
  return lines
