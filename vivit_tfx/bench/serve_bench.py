"""`vivit-tfx bench serve`: requests/s and latency of `serve`'s TF Serving REST `:predict`.

Starts the server on a loopback port, sends one synthetic clip (as `predict --rest-request`
builds it) repeated to each batch size, sequentially from `--clients` client threads, and prints
requests/s, clips/s and latency p50/p95 per batch size.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
import urllib.request
from typing import Dict, List, Optional

import numpy as np

from vivit_tfx.data import synthetic
from vivit_tfx.inference import predict, rest


def _post(url: str, body: bytes) -> float:
  start = time.perf_counter()
  with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=120) as reply:
    reply.read()
  return time.perf_counter() - start


def measure(url: str, body: bytes, requests: int, clients: int) -> Dict[str, float]:
  """Sends `requests` bodies from `clients` threads; wall time and per-request latencies."""
  latencies: List[float] = []
  lock = threading.Lock()
  per_client = max(1, requests // clients)

  def client():
    for _ in range(per_client):
      t = _post(url, body)
      with lock:
        latencies.append(t)

  threads = [threading.Thread(target=client) for _ in range(clients)]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  return {'requests': len(latencies), 'rps': len(latencies) / wall,
          'p50_ms': 1000 * float(np.percentile(latencies, 50)),
          'p95_ms': 1000 * float(np.percentile(latencies, 95))}


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench serve', description=__doc__)
  parser.add_argument('--model-dir', default='output/serving/vivit_violence',
                      help='a SavedModel or a folder of numbered versions')
  parser.add_argument('--model-name', default='vivit_violence')
  parser.add_argument('--batch-sizes', default='1,16')
  parser.add_argument('--requests', type=int, default=100, help='per batch size')
  parser.add_argument('--clients', type=int, default=1, help='concurrent client threads')
  args = parser.parse_args(argv)
  # local: the [serve] extra; `bench watch` imports this module too and runs without it.
  from vivit_tfx.inference import server  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    video = os.path.join(tmp, 'clip.mp4')
    synthetic.long_video(video, [1], segment_s=2.0)
    model = rest.ModelServer(args.model_dir, args.model_name)
    instance = predict.rest_request(video, model.servable.path)['instances'][0]
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      port = s.getsockname()[1]
    config = server.ServerConfig(model_dir=args.model_dir, model_name=args.model_name,
                                 port=port, work_dir=os.path.join(tmp, 'work'))
    rows = []
    with server.BackgroundServer(config, model) as base:
      url = f'{base}/v1/models/{args.model_name}:predict'
      for batch in (int(b) for b in args.batch_sizes.split(',')):
        body = json.dumps({'instances': [instance] * batch}).encode()
        for _ in range(3):
          _post(url, body)  # warm-up (traces the batch shape)
        rows.append({'batch': batch, **measure(url, body, args.requests, args.clients)})
  print(f'serve: {model.servable.path}, {args.clients} client(s), {os.cpu_count()} CPU(s)')
  print('| batch | requests | requests/s | clips/s | p50 (ms) | p95 (ms) |')
  print('|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    print(f'| {r["batch"]} | {r["requests"]} | {r["rps"]:.1f} | {r["rps"] * r["batch"]:.1f} | '
          f'{r["p50_ms"]:.1f} | {r["p95_ms"]:.1f} |')
  return 0
