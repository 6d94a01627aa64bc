"""Cache keys that follow the code and the schema.

TFX keys a component's cache on its class path, exec properties and input artifacts
(tfx@v1.16.0 orchestration/portable/cache_utils.py `calculate_cache_context`), not on the code
behind a class path or a dotted `run_fn`, nor on the content of a file named by a path. So each
component that runs project code gets, as an exec property, the hash of every project module
it loads (found by reading import statements, lazy ones included, transitively, with each
package's `__init__.py`), and ImportSchemaGen the hash of the schema file's content.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from typing import Dict, Iterable, List, Optional

import tensorflow as tf

PACKAGE = 'vivit_tfx'


def package_root() -> str:
  """The folder of the installed `vivit_tfx` package (found without importing it)."""
  return os.path.dirname(importlib.util.find_spec(PACKAGE).origin)


def _file_of(module: str, root: str) -> Optional[str]:
  parts = module.split('.')
  if parts[0] != PACKAGE:
    return None
  base = os.path.join(root, *parts[1:])
  for path in (base + '.py', os.path.join(base, '__init__.py')):
    if os.path.isfile(path):
      return path
  return None  # a third-party module, or an attribute (`from m import function`)


def _imports(path: str, module: str) -> Iterable[str]:
  """Dotted names a module may load: `import a.b`, `from a import b` (→ a, a.b), relative."""
  with open(path, 'rb') as f:
    tree = ast.parse(f.read(), path)
  package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split('.')[:len(package.split('.')) - node.level + 1]
        prefix = '.'.join(base + ([node.module] if node.module else []))
      else:
        prefix = node.module or ''
      yield prefix
      yield from (f'{prefix}.{alias.name}' for alias in node.names)


def module_files(modules: Iterable[str], root: Optional[str] = None) -> List[str]:
  """Source files of `modules` and of every project module they load, transitively."""
  root = root or package_root()
  seen: Dict[str, str] = {}
  todo = list(modules)
  while todo:
    parts = todo.pop().split('.')
    for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
      name = '.'.join(parts[:i])
      path = None if name in seen else _file_of(name, root)
      if path is not None:
        seen[name] = path
        todo.extend(_imports(path, name))
  return sorted(set(seen.values()))


def code(modules: Iterable[str], root: Optional[str] = None) -> str:
  """Hash of the project code that `modules` load (16 hex digits)."""
  root = root or package_root()
  digest = hashlib.sha256()
  for path in module_files(modules, root):
    with open(path, 'rb') as f:
      digest.update(os.path.relpath(path, root).encode() + b'\0' + f.read() + b'\0')
  return digest.hexdigest()[:16]


def dotted_module(dotted_path: str) -> str:
  """'vivit_tfx.models.trainer.model.run_fn' → 'vivit_tfx.models.trainer.model'."""
  return dotted_path.rpartition('.')[0]


def file_content(path: str) -> str:
  """sha256 of a file's content through tf.io.gfile (any URI); '' when it cannot be read
  here (a path inside the pipeline image, whose tag keys it there; a bucket this machine
  cannot reach when compiling)."""
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      return hashlib.sha256(f.read()).hexdigest()
  except tf.errors.OpError:
    return ''
