"""`vivit-tfx bench pipeline` runs end to end on a tiny draw and prints its rows (a smoke test:
benchmarks are commands, their figures are not asserted)."""
import json

from vivit_tfx.bench import pipeline_bench


def test_bench_pipeline_prints_every_row(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)  # no pushed model here: the serving rows are skipped
  assert pipeline_bench.main(['--clips', '2', '--hd-videos', '1', '--skip-memory',
                              '--skip-beam']) == 0
  out = capsys.readouterr().out
  for row in ('720p H.264 video (8 × 64×64 at 8 fps', 'bytes per stored clip',
              'training input clips/s', 'input pipeline vs train step'):
    assert row in out, out
  figures = json.loads(out.strip().splitlines()[-1])
  assert figures['ingest_vs_grab'] > 0 and figures['ours_bytes_per_clip'] > 0
