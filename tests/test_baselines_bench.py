"""`vivit-tfx bench baselines` on the tiny session clips: the clip rule, the models, the CLI."""
import numpy as np

from vivit_tfx import cli
from vivit_tfx.bench import baselines_bench


def test_views_loop_short_videos_and_follow_the_view_rule():
  frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  long = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
  videos = baselines_bench.Videos([frames, long], np.array([0, 1]))
  views = baselines_bench.view_clips(videos, num_frames=8, num_views=2)  # [2, 2, 8, 2, 2, 3]
  assert views.shape == (2, 2, 8, 2, 2, 3)
  assert list(views[0, 0, :, 0, 0, 0]) == [0, 1, 2, 3, 4, 0, 1, 2]  # 5 frames, looped
  # 20 frames: 12 possible starts, views at the centres of 2 segments (3 and 9).
  assert [views[1, k, 0, 0, 0, 0] for k in range(2)] == [3, 9]


def test_baselines_train_and_score_on_ingested_splits(clips_dir):
  rows = baselines_bench.run(clips_dir, models=('logreg', 'c3d', 'c3d-diff', 'logreg-clip'),
                             seeds=(0,), steps=2, num_views=2, log=lambda _: None)
  assert [r['model'] for r in rows] == ['logreg', 'c3d', 'c3d-diff', 'logreg-clip']
  for row in rows:
    for split in baselines_bench.SPLITS:
      assert 0.0 <= row[f'{split}_accuracy'] <= 1.0
  # The default synthetic motion is easy: frame-difference statistics separate the classes.
  assert rows[0]['eval_auc'] + rows[0]['test_auc'] >= 1.5, rows[0]
  assert '| logreg | 0 |' in baselines_bench.table(rows)


def test_clip_windows_are_scored_and_averaged_per_video():
  rng = np.random.default_rng(0)
  still = [np.full((12, 8, 8, 3), 100, np.uint8) for _ in range(4)]
  moving = [rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8) for _ in range(4)]
  videos = baselines_bench.Videos(still + moving, np.array([0] * 4 + [1] * 4))
  model = baselines_bench.MotionLogReg(0, window=4)
  x, owners = model._features(videos)
  assert x.shape[0] == 8 * 5 and list(owners[:5]) == [0] * 5  # starts 0, 2, 4, 6, 8
  model.fit(videos)
  p = model.predict(videos)
  assert p.shape == (8,) and (p[:4] < 0.5).all() and (p[4:] > 0.5).all()


def test_the_difference_cnn_feeds_its_stem_six_channels():
  model = baselines_bench.build_cnn('c3d-diff', (4, 16, 16, 3))
  stem = [l for l in model.layers if isinstance(l, baselines_bench.keras.layers.Conv3D)][0]
  assert stem.kernel.shape[-2] == 6


def test_cli_bad_clips_dir_is_one_line(tmp_path, capsys):
  assert cli.main(['bench', 'baselines', '--clips-dir', str(tmp_path), '--models',
                   'logreg']) == 1
  out = capsys.readouterr().err.strip().splitlines()
  assert len(out) == 1 and 'no train/*.tfrecord' in out[0], out
