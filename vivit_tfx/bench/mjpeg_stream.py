"""A loopback HTTP MJPEG "camera" playing a video file in real time (tests and benchmarks).

Serves `multipart/x-mixed-replace` JPEG frames at the video's frame rate on 127.0.0.1, logs
when each frame went out, and can drop the connection once mid-way and refuse new ones for a
while (a camera that goes away and comes back); then it resumes where it stopped.
"""
from __future__ import annotations

import http.server
import threading
import time
from typing import List, Optional, Tuple

import cv2

BOUNDARY = 'vivitframe'


class MjpegStream:
  """`with MjpegStream(path) as url:` → http://127.0.0.1:PORT/stream.mjpg."""

  def __init__(self, video: str, cut_at_s: Optional[float] = None, gap_s: float = 0.0,
               loops: int = 1, quality: int = 85):
    capture = cv2.VideoCapture(video)
    self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    self.jpegs: List[bytes] = []
    while True:
      ok, frame = capture.read()
      if not ok:
        break
      self.jpegs.append(cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                        .tobytes())
    capture.release()
    self.total = len(self.jpegs) * loops
    self.cut_frame = None if cut_at_s is None else int(cut_at_s * self.fps)
    self.gap_s = gap_s
    self.sent: List[Tuple[float, float]] = []  # (time.time() sent, video time in s)
    self.position = 0
    self.refuse_until = 0.0
    self.connections = 0
    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
    self._server.daemon_threads = True
    self.url = f'http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg'

  def video_time(self, unix: float) -> float:
    """The video time on air at wall-clock `unix` (the last frame sent by then)."""
    on_air = [v for t, v in self.sent if t <= unix]
    return on_air[-1] if on_air else 0.0

  @property
  def finished(self) -> bool:
    return self.position >= self.total

  def _handler(self):
    stream = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):  # quiet
        pass

      def do_GET(self):  # pylint: disable=invalid-name
        if time.time() < stream.refuse_until or stream.finished:
          self.send_error(503 if not stream.finished else 404)
          return
        stream.connections += 1
        self.send_response(200)
        self.send_header('Content-Type', f'multipart/x-mixed-replace; boundary={BOUNDARY}')
        self.end_headers()
        start, first = time.monotonic(), stream.position
        try:
          while not stream.finished:
            i = stream.position
            if stream.cut_frame is not None and i == stream.cut_frame:
              stream.cut_frame = None
              stream.refuse_until = time.time() + stream.gap_s
              return  # the camera goes away mid-stream
            due = start + (i - first) / stream.fps
            time.sleep(max(0.0, due - time.monotonic()))
            jpeg = stream.jpegs[i % len(stream.jpegs)]
            self.wfile.write(f'--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n'
                             f'Content-Length: {len(jpeg)}\r\n\r\n'.encode() + jpeg + b'\r\n')
            self.wfile.flush()
            stream.sent.append((time.time(), i / stream.fps))
            stream.position += 1
        except (BrokenPipeError, ConnectionResetError):
          pass

    return Handler

  def __enter__(self) -> str:
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
    self._thread.start()
    return self.url

  def __exit__(self, *exc) -> None:
    self._server.shutdown()
    self._server.server_close()
