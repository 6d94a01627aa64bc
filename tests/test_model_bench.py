"""The analytic FLOP count behind `bench train`'s MFU: it reproduces the paper's Table 2 for
ViViT-B/16x2 (within 2 %) and, independently, the multiply-adds of every matrix product and
convolution in the traced graph of the model as built (read from the op shapes), the conv
tokenizer's included. `--compare-transformers` times a forward and a training step per row."""
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.bench import model_bench
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit_config import preset


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


@pytest.mark.parametrize('name,variant', [
    ('vivit-tiny', 'spatiotemporal'), ('vivit-tiny', 'factorised_encoder'),
    ('vivit-tiny', 'factorised_self_attention'), ('vivit-tiny', 'factorised_dot_product'),
    ('vivit-hybrid-tiny', 'spatiotemporal'), ('vivit-hybrid-tiny', 'factorised_encoder')])
def test_analytic_macs_match_the_traced_model(name, variant):
  config = preset(name, variant=variant)
  model = initialised_vivit(config)
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


def test_compare_transformers_times_forward_and_training_step_with_the_hybrids(monkeypatch):
  monkeypatch.setattr(model_bench.sys, 'executable', '/bin/false')  # no torch there
  full_preset = model_bench.preset  # one layer each: tracing ViViT-B's training step is slow
  monkeypatch.setattr(model_bench, 'preset', lambda name, **kw: full_preset(name, num_layers=1,
                                                                            **kw))
  table = model_bench.compare_transformers(frames=4, size=32, repeats=1)
  assert 'not importable in /bin/false (pass --transformers-python PY)' in table
  lines = table.splitlines()
  assert ('| model | implementation | clip (frames x px) | params (M) | GFLOPs/clip | '
          'CPU s / forward | wall s / forward | CPU s / training step | '
          'wall s / training step |') in lines
  rows = {line.split(' | ')[0][2:]: line.strip('| ').split(' | ')
          for line in lines if line.startswith('| vivit')}
  assert list(rows) == ['vivit-b-16x2', 'vivit-hybrid-b', 'vivit-tiny', 'vivit-hybrid-tiny']
  for name, cells in rows.items():
    assert cells[1] == 'project (Keras 3, TF, XLA off)'
    assert cells[2] == ('8 x 64' if name.endswith('tiny') else '4 x 32')
    assert all(float(v) > 0 for v in cells[3:]), cells  # params, GFLOPs, 4 timings
  # The hybrid's FLOPs count its convolutions (0.103 G; vivit-tiny's tubelets: 0.006 G).
  assert float(rows['vivit-hybrid-tiny'][4]) > 5 * float(rows['vivit-tiny'][4])
