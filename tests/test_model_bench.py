"""The analytic FLOP count behind `bench train`'s MFU: it reproduces the paper's Table 2 for
ViViT-B/16x2 (within 2 %) and, independently, the multiply-adds of every matrix product and
convolution in the traced graph of the model as built (read from the op shapes)."""
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.bench import model_bench
from vivit_tfx.models.vivit import build_vivit
from vivit_tfx.models.vivit_config import preset


@pytest.mark.parametrize('variant', ['spatiotemporal', 'factorised_encoder',
                                     'factorised_self_attention', 'factorised_dot_product'])
def test_gflops_match_paper_table2(variant):
  config = preset('vivit-b-16x2', variant=variant)  # gap for Models 3 and 4, else token
  paper = model_bench.PAPER_TABLE2[variant][0]
  assert abs(model_bench.analytic_gmacs(config) - paper) / paper < 0.02


def _graph_macs(graph: tf.Graph) -> int:
  """Multiply-adds of the MatMul, BatchMatMul, Einsum and Conv3D ops of a traced graph."""
  total = 0
  for op in graph.get_operations():
    shapes = [x.shape.as_list() for x in op.inputs]
    out = op.outputs[0].shape.as_list() if op.outputs else []
    if op.type == 'MatMul':
      a, b = shapes
      m, k = a[::-1] if op.get_attr('transpose_a') else a
      n = b[0] if op.get_attr('transpose_b') else b[1]
      total += m * k * n
    elif op.type in ('BatchMatMulV2', 'BatchMatMulV3'):
      k = shapes[0][-2] if op.get_attr('adj_x') else shapes[0][-1]
      total += int(np.prod(out)) * k
    elif op.type == 'Conv3D':
      kernel = shapes[1]  # [t, h, w, in, out]
      total += int(np.prod(out)) * int(np.prod(kernel[:-1]))
    elif op.type == 'Einsum':
      equation = op.get_attr('equation').decode()
      sizes = {}
      for letters, shape in zip(equation.split('->')[0].split(','), shapes):
        sizes.update(zip(letters, shape))
      total += int(np.prod(list(sizes.values())))
  return total


@pytest.mark.parametrize('variant', ['spatiotemporal', 'factorised_encoder',
                                     'factorised_self_attention', 'factorised_dot_product'])
def test_analytic_macs_match_the_traced_model(variant):
  config = preset('vivit-tiny', variant=variant)
  model = build_vivit(config)
  spec = tf.TensorSpec((1, config.num_frames, *config.image_size, config.channels), tf.float32)
  graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
  traced = _graph_macs(graph) / 1e9
  assert traced > 0
  # Equal but for the classifier head (hidden x outputs multiply-adds, < 0.01 %).
  assert abs(model_bench.analytic_gmacs(config) - traced) / traced < 1e-4, (traced, variant)


def test_tiny_rows_have_params_and_latency():
  rows = model_bench.run(('vivit-tiny',), ('spatiotemporal',), repeats=1)
  assert rows[0]['params_m'] > 0.1 and rows[0]['latency_ms'] > 0
  assert 'vivit-tiny' in model_bench.format_table(rows)


def test_compare_transformers_says_when_it_cannot_run_them(monkeypatch):
  monkeypatch.setattr(model_bench.sys, 'executable', '/bin/false')  # no torch there
  table = model_bench.compare_transformers(frames=4, size=32, repeats=1)
  assert '| project (Keras 3, TF, XLA off) |' in table
  assert 'not importable in /bin/false (pass --transformers-python PY)' in table
