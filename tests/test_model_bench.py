"""The analytic FLOP count reproduces the paper's Table 2 for ViViT-B/16x2 (within 2 %)."""
import pytest

from vivit_tfx.bench import model_bench
from vivit_tfx.models.vivit_config import preset


@pytest.mark.parametrize('variant', ['spatiotemporal', 'factorised_encoder',
                                     'factorised_self_attention', 'factorised_dot_product'])
def test_gflops_match_paper_table2(variant):
  config = preset('vivit-b-16x2', variant=variant)  # gap for Models 3 and 4, else token
  paper = model_bench.PAPER_TABLE2[variant][0]
  assert abs(model_bench.analytic_gmacs(config) - paper) / paper < 0.02


def test_tiny_rows_have_params_and_latency():
  rows = model_bench.run(('vivit-tiny',), ('spatiotemporal',), repeats=1)
  assert rows[0]['params_m'] > 0.1 and rows[0]['latency_ms'] > 0
  assert 'vivit-tiny' in model_bench.format_table(rows)


def test_compare_transformers_says_when_it_cannot_run_them(monkeypatch):
  monkeypatch.setattr(model_bench.sys, 'executable', '/bin/false')  # no torch there
  table = model_bench.compare_transformers(frames=4, size=32, repeats=1)
  assert '| project (Keras 3, TF, XLA off) |' in table
  assert 'not importable in /bin/false (pass --transformers-python PY)' in table
