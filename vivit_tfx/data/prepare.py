"""A run's first step: the clips the pipeline reads, made from the run's videos with its settings.

Synthetic videos are written only at the default videos folder; existing clips are used only
when their marker names the same input and settings; otherwise the run stops with the command
that re-ingests, or (with --overwrite) re-ingests over an output that holds only ingest's files.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Protocol, Sequence

from vivit_tfx.data import ingest, ingest_output, remote_files, synthetic


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
    ingest_output.check_target(videos_dir, settings.clips_dir, wanted, settings.overwrite)
  except ingest_output.OutputError as e:
    raise DataError(str(e)) from None
  return DataPlan(videos_dir, synthetic=missing, ingest=True)


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
          '--unlabeled-videos: ', **wanted_settings)


def _ingest(videos: str, clips: str, overwrite: bool, progress: bool, what: str,
            **settings) -> None:
  """Ingests `videos` into `clips` and prints the summary; a failure is a DataError whose
  line starts with `what` (the option that named the videos, or '')."""
  try:
    result = ingest_output.ingest_into(videos, clips, overwrite=overwrite, progress=progress,
                                       **settings)
  except ingest_output.NothingUsable as e:
    print(e.summary.to_text())
    raise DataError(f'{what}{e}') from None
  except (ingest_output.OutputError, FileNotFoundError) as e:
    raise DataError(f'{what}{e}') from None
  print(result.to_text())


def warn_splits(settings: DataSettings) -> List[str]:
  """Before training: one line per class whose ingested splits cannot meet the run's
  blessing minimums (printed, and returned)."""
  try:
    with open(os.path.join(settings.clips_dir, ingest.SUMMARY)) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return []
  made = ingest_output.read_provenance(settings.clips_dir)
  test_share = (made.settings.get('splits') or {}).get('test') if made else None
  lines = settings.blessing_warnings(summary.get('clips', {}), summary.get('classes', []),
                                     test_share or ingest.SplitConfig().test)
  for line in lines:
    print(f'[run] warning: {line}')
  return lines
