"""ViViT initialised from an image ViT .npz (google-research/vision_transformer keys): on a clip
that repeats one frame, Model 1 (gap, tiled positions) gives the 2D ViT's logits, computed here
by an independent NumPy forward; Model 2's spatial encoder gives the ViT's representation."""
import io

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from vivit_tfx.models.checkpoints import vit_checkpoint
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit import build_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig

D, HEADS, MLP, LAYERS, PATCH = 16, 2, 32, 2, 8
CONFIG = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, PATCH, PATCH),
                     hidden_size=D, num_layers=LAYERS, num_temporal_layers=1, num_heads=HEADS,
                     mlp_dim=MLP)


def vit_arrays(seed=0, grid=2, cls=False, head_outputs=1, hidden=D, heads=HEADS,
               layers=LAYERS):
  """A random ViT checkpoint in the vision_transformer .npz key format."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape, s=0.3: rng.normal(0, s, shape).astype(np.float32)
  hd = hidden // heads
  a = {'embedding/kernel': normal(PATCH, PATCH, 3, hidden), 'embedding/bias': normal(hidden),
       'Transformer/posembed_input/pos_embedding': normal(1, grid * grid + cls, hidden),
       'Transformer/encoder_norm/scale': 1 + normal(hidden),
       'Transformer/encoder_norm/bias': normal(hidden),
       'head/kernel': normal(hidden, head_outputs), 'head/bias': normal(head_outputs)}
  if cls:
    a['cls'] = normal(1, 1, hidden)
  for i in range(layers):
    b = f'Transformer/encoderblock_{i}/'
    for ln in ('LayerNorm_0', 'LayerNorm_2'):
      a[f'{b}{ln}/scale'], a[f'{b}{ln}/bias'] = 1 + normal(hidden), normal(hidden)
    for name in ('query', 'key', 'value'):
      a[f'{b}MultiHeadDotProductAttention_1/{name}/kernel'] = normal(hidden, heads, hd)
      a[f'{b}MultiHeadDotProductAttention_1/{name}/bias'] = normal(heads, hd)
    a[f'{b}MultiHeadDotProductAttention_1/out/kernel'] = normal(heads, hd, hidden)
    a[f'{b}MultiHeadDotProductAttention_1/out/bias'] = normal(hidden)
    a[f'{b}MlpBlock_3/Dense_0/kernel'], a[f'{b}MlpBlock_3/Dense_0/bias'] = (
        normal(hidden, MLP), normal(MLP))
    a[f'{b}MlpBlock_3/Dense_1/kernel'], a[f'{b}MlpBlock_3/Dense_1/bias'] = (
        normal(MLP, hidden), normal(hidden))
  return a


def save(arrays, path):
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())
  return path


# --- An independent NumPy ViT (the reference) -----------------------------------------------

def _norm(x, a, prefix):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-6) * a[prefix + 'scale'] + a[prefix + 'bias']


def vit_forward(a, frame):
  """frame [H, W, 3] → (representation [D] (gap), logits) of the 2D ViT with gap classifier."""
  h, w, c = frame.shape
  patches = frame.reshape(h // PATCH, PATCH, w // PATCH, PATCH, c).transpose(0, 2, 1, 3, 4)
  x = patches.reshape(-1, PATCH * PATCH * c) @ a['embedding/kernel'].reshape(-1, D)
  x = x + a['embedding/bias'] + a['Transformer/posembed_input/pos_embedding'][0]
  for i in range(LAYERS):
    b = f'Transformer/encoderblock_{i}/'
    m = b + 'MultiHeadDotProductAttention_1/'
    y = _norm(x, a, b + 'LayerNorm_0/')
    q, k, v = (np.einsum('nd,dhk->nhk', y, a[f'{m}{n}/kernel']) + a[f'{m}{n}/bias']
               for n in ('query', 'key', 'value'))
    s = np.einsum('nhk,mhk->hnm', q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum('hnm,mhk->nhk', p, v)
    x = x + np.einsum('nhk,hkd->nd', o, a[m + 'out/kernel']) + a[m + 'out/bias']
    y = _norm(x, a, b + 'LayerNorm_2/') @ a[b + 'MlpBlock_3/Dense_0/kernel']
    y = y + a[b + 'MlpBlock_3/Dense_0/bias']
    y = 0.5 * y * (1 + erf(y / np.sqrt(2)))  # exact GELU (Keras's default)
    x = x + y @ a[b + 'MlpBlock_3/Dense_1/kernel'] + a[b + 'MlpBlock_3/Dense_1/bias']
  rep = _norm(x, a, 'Transformer/encoder_norm/').mean(0)
  return rep, rep @ a['head/kernel'] + a['head/bias']


def static_clip(seed=1, frames=4):
  frame = np.random.default_rng(seed).random((16, 16, 3)).astype(np.float32)
  return frame, np.repeat(frame[None, None], frames, axis=1)  # [1, T, H, W, 3]


# --- Tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize('kernel_init', ['central_frame', 'filter_inflation'])
@pytest.mark.parametrize('variant', ['spatiotemporal', 'factorised_self_attention'])
def test_static_clip_gives_the_2d_vit_logits(tmp_path, kernel_init, variant):
  arrays = vit_arrays()
  path = save(arrays, str(tmp_path / 'vit.npz'))
  model = initialised_vivit(CONFIG.replace(variant=variant, init_checkpoint=path,
                                     kernel_init=kernel_init, init_positional='tile'))
  frame, clip = static_clip()
  _, expected = vit_forward(arrays, frame.astype(np.float64))
  np.testing.assert_allclose(model(clip).numpy()[0], expected, atol=1e-3)
  assert model.init_source['init_checkpoint'] == path
  assert len(model.init_source['init_checkpoint_sha256']) == 64


def test_model2_spatial_encoder_gives_the_2d_vit_representation(tmp_path):
  arrays = vit_arrays(seed=2)
  path = save(arrays, str(tmp_path / 'vit.npz'))
  model = initialised_vivit(CONFIG.replace(variant='factorised_encoder', init_checkpoint=path))
  frame, clip = static_clip(seed=3)
  rep, _ = vit_forward(arrays, frame.astype(np.float64))
  reps = model.frame_representations(clip).numpy()[0]  # [n_t, D]
  for r in reps:
    np.testing.assert_allclose(r, rep, atol=1e-3)


def test_token_checkpoint_cls_and_head_rules(tmp_path):
  arrays = vit_arrays(cls=True, head_outputs=10)
  path = save(arrays, str(tmp_path / 'vit.npz'))
  model = initialised_vivit(CONFIG.replace(classifier='token', init_checkpoint=path))
  table = model.encoder.position.table.numpy()[0]  # [1 + n_t * n_s, D]
  restored = arrays['Transformer/posembed_input/pos_embedding'][0]
  np.testing.assert_allclose(table[0], restored[0])  # CLS slot re-attached
  np.testing.assert_allclose(table[1:], np.tile(restored[1:], (2, 1)))  # tiled over n_t = 2
  np.testing.assert_allclose(model.encoder.cls.token.numpy(), arrays['cls'])
  assert not model.head.kernel.numpy().any()  # 10 ImageNet logits ≠ 1 logit: a new head
  # A gap model takes the same checkpoint (CLS slot dropped).
  gap = initialised_vivit(CONFIG.replace(init_checkpoint=path))
  np.testing.assert_allclose(gap.encoder.position.table.numpy()[0], np.tile(restored[1:], (2, 1)))


def test_model3_temporal_attention_stays_zero_and_model4_loads(tmp_path):
  arrays = vit_arrays()
  path = save(arrays, str(tmp_path / 'vit.npz'))
  m3 = initialised_vivit(CONFIG.replace(variant='factorised_self_attention', init_checkpoint=path))
  block = m3.encoder.blocks[0]
  assert not block.temporal_attention.out.kernel.numpy().any()
  np.testing.assert_allclose(
      block.attention.query.kernel.numpy(),
      arrays['Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel'])
  m4 = initialised_vivit(CONFIG.replace(variant='factorised_dot_product', init_checkpoint=path))
  np.testing.assert_allclose(
      m4.encoder.blocks[1].mlp_out.kernel.numpy(),
      arrays['Transformer/encoderblock_1/MlpBlock_3/Dense_1/kernel'])


def test_resize_when_the_patch_grid_differs(tmp_path):
  arrays = vit_arrays(grid=4)  # a 32x32 ViT (4x4 patches); the model has 2x2
  path = save(arrays, str(tmp_path / 'vit.npz'))
  with pytest.raises(vit_checkpoint.CheckpointMismatch, match='resize_tile') as e:
    initialised_vivit(CONFIG.replace(init_checkpoint=path, init_positional='tile'))
  assert '(1, 16, 16)' in str(e.value) and '(1, 8, 16)' in str(e.value)
  model = initialised_vivit(CONFIG.replace(init_checkpoint=path, init_positional='resize_tile'))
  grid = arrays['Transformer/posembed_input/pos_embedding'][0].reshape(4, 4, D)
  resized = tf.image.resize(grid[None], (2, 2), method='bilinear')[0].numpy().reshape(4, D)
  np.testing.assert_allclose(model.encoder.position.table.numpy()[0], np.tile(resized, (2, 1)),
                             atol=1e-6)
  # Model 2's spatial table has no time axis: 'resize' fits it.
  m2 = initialised_vivit(CONFIG.replace(variant='factorised_encoder', init_checkpoint=path,
                                  init_positional='resize'))
  np.testing.assert_allclose(m2.spatial_encoder.position.table.numpy()[0], resized, atol=1e-6)


@pytest.mark.parametrize('changes,key', [
    (dict(hidden=24, heads=2), 'embedding/kernel'),
    (dict(heads=4), 'MultiHeadDotProductAttention_1/query/kernel'),
    (dict(layers=3), 'encoderblock_'),
])
def test_mismatched_checkpoint_names_the_key_and_shapes(tmp_path, changes, key):
  path = save(vit_arrays(**changes), str(tmp_path / 'vit.npz'))
  with pytest.raises(vit_checkpoint.CheckpointMismatch, match=key) as e:
    initialised_vivit(CONFIG.replace(init_checkpoint=path))
  message = str(e.value)
  assert path in message and 'needs' in message


def test_missing_key_and_missing_file(tmp_path):
  arrays = vit_arrays()
  del arrays['Transformer/encoderblock_1/LayerNorm_2/scale']
  path = save(arrays, str(tmp_path / 'vit.npz'))
  with pytest.raises(vit_checkpoint.CheckpointMismatch,
                     match=r"no key 'Transformer/encoderblock_1/LayerNorm_2/scale'.*\(16,\)"):
    initialised_vivit(CONFIG.replace(init_checkpoint=path))
  with pytest.raises(FileNotFoundError, match='nothing is downloaded'):
    initialised_vivit(CONFIG.replace(init_checkpoint=str(tmp_path / 'absent.npz')))


def test_checkpoint_read_through_gfile_from_ram_filesystem():
  arrays = vit_arrays(seed=5)
  path = save(arrays, 'ram://vit_checkpoint_test/vit.npz')
  assert not tf.io.gfile.exists('/vit_checkpoint_test')  # no local path behind it
  model = initialised_vivit(CONFIG.replace(init_checkpoint=path))
  np.testing.assert_allclose(model.tokenizer.projection.bias.numpy(), arrays['embedding/bias'])
  rebuilt = build_vivit(CONFIG.replace(init_checkpoint=path))
  assert not np.allclose(rebuilt.tokenizer.projection.bias.numpy(), arrays['embedding/bias'])
