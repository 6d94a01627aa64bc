"""A quiet console for long jobs: the user sees stages, progress bars and the summary; library
chatter (absl / TensorFlow / Beam log records, Python warnings, and what the C++ libraries
write to stderr) goes to a log file. Errors still reach the console.

    with console.quiet(log_dir, verbose=args.verbose) as log_path:
      ...
"""
from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import sys
from typing import Iterator

# Loggers that may carry a console handler of their own (TensorFlow adds one when the root
# logger has none at import time).
LIBRARY_LOGGERS = ('absl', 'tensorflow', 'apache_beam', 'tfx', 'ml_metadata')
FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


def log_path_in(log_dir: str, prefix: str = 'run') -> str:
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
  return os.path.join(log_dir, f'{prefix}-{stamp}.log')


@contextlib.contextmanager
def quiet(log_dir: str, verbose: bool = False, prefix: str = 'run') -> Iterator[str]:
  """Inside: library output goes to `<log_dir>/<prefix>-<time>.log` (yielded).

  Python log records below ERROR and Python warnings go only to the file; ERROR and above also
  to the console. File descriptor 2 (where C++ code such as TensorFlow's and FFmpeg's writes)
  is pointed at the file, while Python's `sys.stderr` (progress bars, the CLI's messages) keeps
  the console. With `verbose` nothing is hidden: records go to both, and fd 2 is left alone.
  """
  os.makedirs(log_dir, exist_ok=True)
  path = log_path_in(log_dir, prefix)
  log_file = open(path, 'a', buffering=1, encoding='utf-8')  # pylint: disable=consider-using-with
  sys.stdout.flush()
  sys.stderr.flush()
  saved_stderr, saved_fd = sys.stderr, None
  console = sys.stderr
  if not verbose:
    saved_fd = os.dup(2)
    console = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), 'wb', buffering=0),
                               encoding=getattr(saved_stderr, 'encoding', None) or 'utf-8',
                               errors='backslashreplace', line_buffering=True, write_through=True)
    os.dup2(log_file.fileno(), 2)
    sys.stderr = console

  root = logging.getLogger()
  file_handler = logging.FileHandler(path, encoding='utf-8')
  file_handler.setFormatter(logging.Formatter(FORMAT))
  console_handler = logging.StreamHandler(console)
  console_handler.setLevel(logging.NOTSET if verbose else logging.ERROR)
  console_handler.setFormatter(logging.Formatter('%(levelname)s:%(name)s:%(message)s'))
  saved_root = root.handlers[:]
  saved_libraries = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
                     for n in LIBRARY_LOGGERS}
  root.handlers = [file_handler, console_handler]
  for name in LIBRARY_LOGGERS:
    logger = logging.getLogger(name)
    logger.handlers, logger.propagate = [], True
  logging.captureWarnings(True)
  try:
    yield path
  finally:
    logging.captureWarnings(False)
    root.handlers = saved_root
    for name, (handlers, propagate) in saved_libraries.items():
      logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate
    file_handler.close()
    if saved_fd is not None:
      sys.stderr.flush()
      os.dup2(saved_fd, 2)
      os.close(saved_fd)
      sys.stderr = saved_stderr
      console.close()
    log_file.close()
