"""Local runs that cannot trip over each other: one run per output root at a time (a lock), and
the traces of a killed run (executions left RUNNING in ML Metadata, their half-written output
folders) cleaned up before the next run starts."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from typing import List, Optional

LOCK_FILE = '.vivit-tfx-run.lock'


class BusyError(RuntimeError):
  """Another run holds the output root."""


class RunLock:
  """An exclusive `flock` on `<output_root>/.vivit-tfx-run.lock`, released when the process
  ends however it ends (so a killed run never leaves a stale lock)."""

  def __init__(self, output_root: str, wait: bool = False, poll_s: float = 1.0):
    self.path = os.path.join(output_root, LOCK_FILE)
    self._wait, self._poll_s, self._fd = wait, poll_s, None

  def holder(self) -> str:
    try:
      with open(self.path) as f:
        owner = json.load(f)
      return f'pid {owner["pid"]} on {owner["host"]}, since {owner["since"]}'
    except (OSError, ValueError, KeyError):
      return 'another process'

  def __enter__(self) -> 'RunLock':
    os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    announced = False
    while True:
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if not self._wait:
          os.close(self._fd)
          raise BusyError(f'{os.path.dirname(self.path)}: another run is using this output '
                          f'root ({self.holder()}); wait for it, pass --if-busy wait, or use '
                          'another --output-root') from None
        if not announced:
          print(f'[run] waiting for the run that holds {self.path} ({self.holder()})',
                flush=True)
          announced = True
        time.sleep(self._poll_s)
    os.ftruncate(self._fd, 0)
    os.write(self._fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                                   'since': time.strftime('%Y-%m-%dT%H:%M:%S')}).encode())
    return self

  def __exit__(self, *exc) -> None:
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)


def recover_interrupted_runs(metadata_path: str, pipeline_root: str) -> List[str]:
  """Marks executions a dead run left RUNNING (or NEW) as CANCELED, and removes the output
  folders they were writing. Call with the RunLock held: no live run can own them then.
  Returns one line per execution cancelled."""
  if not os.path.exists(metadata_path):
    return []
  # local: ML Metadata and TFX (~3 s); the CLI imports this module to answer --help at once.
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import metadata  # pylint: disable=g-import-not-at-top
  store = metadata.open_sqlite(metadata_path)
  state = metadata_store_pb2.Execution
  ghosts = [e for e in store.get_executions()
            if e.last_known_state in (state.RUNNING, state.NEW)]
  lines = []
  for execution in ghosts:
    node = metadata.node_id(store, execution) or str(execution.type_id)
    execution.last_known_state = state.CANCELED
    execution.custom_properties['cancel_reason'].string_value = (
        'the run that started it was interrupted (its process is gone)')
    removed = _remove_outputs(pipeline_root, node, execution.id)
    lines.append(f'execution {execution.id} ({node}) left RUNNING by an interrupted run: '
                 f'marked CANCELED' + (f', removed {len(removed)} partial output folder(s)'
                                       if removed else ''))
  if ghosts:
    store.put_executions(ghosts)
  return lines


def _remove_outputs(pipeline_root: str, node: str, execution_id: int) -> List[str]:
  """TFX writes an execution's outputs to <pipeline_root>/<node>/<output key>/<execution id>
  (and scratch space under <node>/.system/…/<execution id>); those folders are its own."""
  removed = []
  node_dir = os.path.join(pipeline_root, node)
  if not os.path.isdir(node_dir):
    return removed
  for dirpath, dirnames, _ in os.walk(node_dir):
    for d in list(dirnames):
      if d == str(execution_id):
        path = os.path.join(dirpath, d)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        dirnames.remove(d)
  return removed


def new_run_id(store_runs_before: List[str], store_runs_after: List[str]) -> Optional[str]:
  """The run this process added (with the lock held there is exactly one)."""
  before = set(store_runs_before)
  added = [r for r in store_runs_after if r not in before]
  return added[-1] if added else None
