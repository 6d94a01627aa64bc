"""TF Serving's REST API (model status, metadata, `:predict`) over a SavedModel, in process.

No web framework here: `ModelServer` turns a request path and JSON body into TF Serving's
response JSON, or raises `RestError` carrying the HTTP status and TF Serving's `{"error": …}`
message. `vivit_tfx.inference.server` puts it behind HTTP.

Request and response shapes follow TF Serving's REST API: row format `{"instances": [...]}` →
`{"predictions": [...]}`, columnar `{"inputs": ...}` → `{"outputs": ...}`, bytes as
`{"b64": "..."}`, an optional `signature_name` (default `serving_default`).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = 'serving_default'
_PATH = re.compile(r'^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?'
                   r'(?P<metadata>/metadata)?(?::(?P<verb>[A-Za-z]+))?$')


class RestError(Exception):
  """An error TF Serving would answer with `{"error": message}` and this HTTP status."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


def version_dir(model_dir: str) -> Tuple[str, int]:
  """A SavedModel folder, or a TF Serving base folder (its newest numeric version).

  Returns (SavedModel path, version number); a lone SavedModel not named by a number is 1.
  """
  model_dir = model_dir.rstrip('/')
  if tf.io.gfile.exists(os.path.join(model_dir, 'saved_model.pb')):
    base = os.path.basename(model_dir)
    return model_dir, int(base) if base.isdigit() else 1
  versions = sorted((int(v.rstrip('/')) for v in (
      tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else [])
                     if v.rstrip('/').isdigit() and tf.io.gfile.exists(
                         os.path.join(model_dir, v.rstrip('/'), 'saved_model.pb'))),
                    reverse=True)
  if not versions:
    raise ValueError(f'{model_dir}: neither a SavedModel nor a folder of numbered SavedModel '
                     'versions (run `vivit-tfx run` first, or pass --model-dir)')
  return os.path.join(model_dir, str(versions[0])), versions[0]


@dataclasses.dataclass
class Servable:
  """One loaded version of one model."""
  name: str
  version: int
  path: str
  loaded: Any  # the tf.saved_model.load result

  @property
  def signatures(self):
    return self.loaded.signatures


class ModelServer:
  """Serves one model: the newest version of its folder, as TF Serving's default policy.

  `refresh()` loads a newer version pushed since (TF Serving polls its folder the same way);
  requests in flight finish on the version they started with.
  """

  def __init__(self, model_dir: str, name: str):
    self.model_dir, self.name = model_dir, name
    self.servable = self._load(*version_dir(model_dir))

  def _load(self, path: str, version: int) -> Servable:
    return Servable(self.name, version, path, tf.saved_model.load(path))

  def refresh(self) -> bool:
    """True if a newer version was found and is now served."""
    path, version = version_dir(self.model_dir)
    if version <= self.servable.version:
      return False
    self.servable = self._load(path, version)  # one assignment: requests see old or new
    return True

  # --- routing ---------------------------------------------------------------------------
  def handle(self, method: str, path: str, body: bytes = b'') -> Dict[str, Any]:
    """`path` is what follows /v1/models/; returns the response JSON or raises RestError."""
    match = _PATH.match(path)
    if not match:
      raise RestError(f'Malformed request: {method} /v1/models/{path}', 404)
    name, version, verb = match['name'], match['version'], match['verb']
    servable = self._find(name, version)
    if method == 'GET' and not verb:
      return self.metadata(servable) if match['metadata'] else self.status(servable)
    if method == 'POST' and verb == 'predict' and not match['metadata']:
      return self.predict(servable, body)
    if method == 'POST' and verb in ('classify', 'regress'):
      raise RestError(f'{verb} needs a Classify/Regress signature; this model has predict '
                      'signatures only (use :predict)')
    raise RestError(f'Malformed request: {method} /v1/models/{path}', 404)

  def _find(self, name: str, version: Optional[str]) -> Servable:
    s = self.servable
    if name != s.name:
      raise RestError(f'Servable not found for request: Latest({name})', 404)
    if version is not None and version != str(s.version):
      raise RestError(f'Servable not found for request: Specific({name}, {version})', 404)
    return s

  # --- endpoints -------------------------------------------------------------------------
  @staticmethod
  def status(s: Servable) -> Dict[str, Any]:
    return {'model_version_status': [{'version': str(s.version), 'state': 'AVAILABLE',
                                      'status': {'error_code': 'OK', 'error_message': ''}}]}

  @staticmethod
  def metadata(s: Servable) -> Dict[str, Any]:
    """Signature names with their inputs and outputs (dtype and shape), TF Serving style."""
    def tensors(specs) -> Dict[str, Any]:
      return {k: {'dtype': v.dtype.name, 'shape': v.shape.as_list() if v.shape.rank is not None
                  else None} for k, v in specs.items()}
    defs = {name: {'inputs': tensors(fn.structured_input_signature[1]),
                   'outputs': tensors(fn.structured_outputs), 'method_name': 'tensorflow/serving/predict'}
            for name, fn in s.signatures.items()}
    return {'model_spec': {'name': s.name, 'version': str(s.version), 'signature_name': ''},
            'metadata': {'signature_def': {'signature_def': defs}}}

  def predict(self, s: Servable, body: bytes) -> Dict[str, Any]:
    try:
      request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise RestError(f'JSON Parse error: {e}') from None
    except RecursionError:
      raise RestError('JSON Parse error: the body is nested too deeply') from None
    if not isinstance(request, dict):
      raise RestError('the request body must be a JSON object')
    signature = request.get('signature_name', DEFAULT_SIGNATURE)
    if signature not in s.signatures:
      raise RestError(f'Serving signature name: "{signature}" not found in signature def '
                      f'(has: {", ".join(sorted(s.signatures))})')
    fn = s.signatures[signature]
    specs = fn.structured_input_signature[1]  # {input name: TensorSpec}
    if ('instances' in request) == ('inputs' in request):
      raise RestError("Missing 'inputs' or 'instances' key" if 'instances' not in request else
                      "Request can have either 'instances' or 'inputs', not both")
    row = 'instances' in request
    try:
      columns = _rows_to_columns(request['instances'], specs) if row else _named(
          request['inputs'], specs, 'inputs')
      tensors = {k: _tensor(v, specs[k], k) for k, v in columns.items()}
    except RecursionError:
      raise RestError('the request nests its values too deeply') from None
    if row and len({t.shape[0] for t in tensors.values()}) > 1:
      raise RestError('instances have inputs with different batch sizes')
    try:
      outputs = {k: v.numpy() for k, v in fn(**tensors).items()}
    except Exception as e:  # pylint: disable=broad-except
      raise RestError(first_line(e)) from None
    if row:
      return {'predictions': _rows(outputs)}
    if len(outputs) == 1:
      return {'outputs': _jsonable(*next(iter(outputs.items()))[::-1])}
    return {'outputs': {k: _jsonable(v, k) for k, v in outputs.items()}}


# --- request decoding ----------------------------------------------------------------------
def _is_b64(value) -> bool:
  return isinstance(value, dict) and set(value) == {'b64'}


def _decode(value, where: str):
  """Nested lists with {"b64": …} leaves → the same with bytes leaves."""
  if isinstance(value, list):
    return [_decode(v, where) for v in value]
  if _is_b64(value):
    if not isinstance(value['b64'], str):
      raise RestError(f'{where}: "b64" must hold a string')
    try:
      return base64.b64decode(value['b64'], validate=True)
    except (binascii.Error, ValueError):
      raise RestError(f'{where}: "b64" is not valid base64') from None
  if isinstance(value, dict):
    raise RestError(f'{where}: an object may only be {{"b64": "..."}} here')
  return value


def _named(value, specs, where: str) -> Dict[str, Any]:
  """{"input": value, …}, or a bare value when the signature has one input."""
  if isinstance(value, dict) and not _is_b64(value):
    unknown = set(value) - set(specs)
    if unknown:
      raise RestError(f'{where}: unknown input(s) {sorted(unknown)}; the signature takes '
                      f'{sorted(specs)}')
    missing = set(specs) - set(value)
    if missing:
      raise RestError(f'{where}: missing input(s) {sorted(missing)}')
    return {k: _decode(v, f'{where}.{k}') for k, v in value.items()}
  if len(specs) != 1:
    raise RestError(f'{where}: the signature takes several inputs {sorted(specs)}: name them')
  return {next(iter(specs)): _decode(value, where)}


def _rows_to_columns(instances, specs) -> Dict[str, List[Any]]:
  if not isinstance(instances, list) or not instances:
    raise RestError("'instances' must be a non-empty list")
  rows = [_named(x, specs, f'instances[{i}]') for i, x in enumerate(instances)]
  return {k: [r[k] for r in rows] for k in specs}


def _tensor(value, spec, name: str):
  try:
    if spec.dtype == tf.string:
      array = np.array(value, dtype=object)
      if array.size and not all(isinstance(x, (bytes, str)) for x in array.flat):
        raise ValueError('expected strings or {"b64": ...}')
      array = np.vectorize(lambda x: x.encode() if isinstance(x, str) else x,
                           otypes=[object])(array) if array.size else array
    else:
      array = np.array(value, dtype=spec.dtype.as_numpy_dtype)
  except (ValueError, TypeError) as e:
    raise RestError(f'input {name!r}: {e} (dtype {spec.dtype.name})') from None
  if not tf.TensorShape(array.shape).is_compatible_with(spec.shape):
    raise RestError(f'input {name!r}: shape {list(array.shape)} does not match the '
                    f'signature\'s {spec.shape.as_list()}')
  return tf.constant(array, dtype=spec.dtype)


# --- response encoding ---------------------------------------------------------------------
def _jsonable(array: np.ndarray, name: str):
  if array.dtype == object or array.dtype.kind == 'S':
    def leaf(b: bytes):
      if name.endswith('_bytes'):
        return {'b64': base64.b64encode(b).decode('ascii')}
      try:
        return b.decode('utf-8')
      except UnicodeDecodeError:
        return {'b64': base64.b64encode(b).decode('ascii')}
    return np.vectorize(leaf, otypes=[object])(array).tolist() if array.size else array.tolist()
  return array.tolist()


def _rows(outputs: Dict[str, np.ndarray]) -> List[Any]:
  if len(outputs) == 1:
    return _jsonable(*next(iter(outputs.items()))[::-1])
  columns = {k: _jsonable(v, k) for k, v in outputs.items()}
  return [{k: columns[k][i] for k in columns} for i in range(len(next(iter(columns.values()))))]


def first_line(e: Exception) -> str:
  """The informative line of a (TensorFlow) error, without graph and stack boilerplate."""
  lines = [l.strip() for l in str(getattr(e, 'message', '') or e).splitlines()]
  skip = ('Graph execution error', 'Detected at node', '<stack traces', '[[', 'File "')
  useful = [l for l in lines if l and not l.startswith(skip)]
  line = useful[0] if useful else (lines[0] if lines and lines[0] else type(e).__name__)
  return line if len(line) <= 500 else line[:500] + '…'
