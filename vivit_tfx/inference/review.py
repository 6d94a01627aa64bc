"""The review page of `vivit-tfx serve`: look at what the model flags in a video.

A review (one uploaded or picked video) gets a job folder under `<work_dir>/jobs/<id>/` holding
the upload, the timeline (`vivit_tfx.inference.timeline`), one thumbnail per flagged segment,
the attention overlay (`vivit_tfx.inference.explain`) and `result.json`. The result page plays
the video with the flagged segments on its time bar and records a verdict per segment, and
stretches the model missed, in `<work_dir>/verdicts.jsonl` (`vivit_tfx.inference.verdicts`).
Nothing is written anywhere else; library videos are only read. Pages are plain HTML with a few lines of inline
script: no external CDN, so the page works offline.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import threading
import urllib.parse
import uuid
from typing import Any, Dict, List, Optional

from vivit_tfx.data import video_reader
from vivit_tfx.inference import access, explain, predict, timeline, verdicts

import cv2  # pylint: disable=g-bad-import-order  # after video_reader sets OpenCV's log level

_JOB_ID = re.compile(r'^[0-9a-f]{12}$')
RESULT_FILE = 'result.json'
THUMB_WIDTH = 192


class NotAVideo(ValueError):
  """The submitted file cannot be reviewed; the message says which file and why."""


@dataclasses.dataclass(frozen=True)
class Job:
  id: str
  folder: str
  name: str  # as the user named the video (display only, never a path)
  upload_path: str


class Reviewer:
  """Runs reviews one at a time (the model tools load the model and draw with matplotlib)."""

  def __init__(self, model_dir: str, work_dir: str, videos_dir: str = '',
               window_s: Optional[float] = None, stride_s: float = 1.0,
               threshold: float = 0.5):  # window_s: `timeline.window_s_for`
    self.model_dir, self.videos_dir = model_dir, videos_dir
    self.jobs_dir = os.path.join(os.path.abspath(work_dir), 'jobs')
    self.verdicts = verdicts.VerdictLog(os.path.join(os.path.abspath(work_dir), verdicts.FILE))
    self.window_s, self.stride_s, self.threshold = window_s, stride_s, threshold
    self._lock = threading.Lock()

  # --- jobs ------------------------------------------------------------------------------
  def new_job(self, name: str) -> Job:
    job_id = uuid.uuid4().hex[:12]
    folder = os.path.join(self.jobs_dir, job_id)
    os.makedirs(folder)
    stem, ext = os.path.splitext(os.path.basename(name))
    stem = re.sub(r'[^A-Za-z0-9_-]', '_', stem)[:80] or 'video'  # a safe local name
    ext = ext.lower() if ext.lower() in video_reader.VIDEO_EXTENSIONS else '.upload'
    upload = os.path.join(folder, stem + ext)
    return Job(job_id, folder, os.path.basename(name)[:200] or 'upload', upload)

  def discard(self, job: Job) -> None:
    """Removes a rejected job's folder (only files this server wrote there)."""
    for name in os.listdir(job.folder):
      os.remove(os.path.join(job.folder, name))
    os.rmdir(job.folder)

  def _folder(self, job_id: str) -> str:
    folder = os.path.join(self.jobs_dir, job_id)
    if not _JOB_ID.match(job_id) or not os.path.isdir(folder):
      raise KeyError(job_id)
    return folder

  def result(self, job_id: str) -> Dict[str, Any]:
    path = os.path.join(self._folder(job_id), RESULT_FILE)
    if not os.path.exists(path):
      raise KeyError(job_id)
    with open(path) as f:
      return json.load(f)

  def file(self, job_id: str, name: str) -> str:
    """A file of a finished review, by plain name (no paths)."""
    folder = self._folder(job_id)
    if name != os.path.basename(name) or name.startswith('.') or name == RESULT_FILE:
      raise KeyError(name)
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      raise KeyError(name)
    return path

  # --- the library folder ----------------------------------------------------------------
  def library(self, limit: int = 500) -> List[str]:
    """Videos under `videos_dir`, as paths relative to it."""
    if not self.videos_dir or not os.path.isdir(self.videos_dir):
      return []
    found = []
    for root, dirs, names in os.walk(self.videos_dir):
      dirs.sort()
      found += [rel for rel in (os.path.relpath(os.path.join(root, n), self.videos_dir)
                                for n in sorted(names)
                                if os.path.splitext(n)[1].lower() in video_reader.VIDEO_EXTENSIONS)
                if self._inside(rel)]
      if len(found) >= limit:
        break
    return found[:limit]

  def _inside(self, rel: str) -> bool:
    try:
      return bool(access.inside(self.videos_dir, rel))
    except KeyError:
      return False

  def library_path(self, name: str) -> str:
    """The real path of a library video; no path tricks, no symlink out of the folder."""
    try:
      if not isinstance(name, str) or name not in self.library():
        raise KeyError(name)
      return access.inside(self.videos_dir, name)
    except KeyError:
      raise ValueError(f'{name!r} is not a video of the library folder') from None

  def record(self, job_id: str, body: Any, reviewer: str) -> Dict[str, Any]:
    """Keeps a verdict on review `job_id` (KeyError: no such review; ValueError: a bad one)."""
    return self.verdicts.append(verdicts.make(self.result(job_id), body, reviewer))

  # --- the review itself -----------------------------------------------------------------
  def review(self, job: Job, path: str) -> Dict[str, Any]:
    """Label, timeline, thumbnails, attention for `path`; raises NotAVideo with the reason."""
    if os.path.splitext(job.name)[1].lower() not in video_reader.VIDEO_EXTENSIONS:
      raise NotAVideo(f'{job.name}: not a video file (expected one of '
                      f'{", ".join(video_reader.VIDEO_EXTENSIONS)})')
    try:
      info = video_reader.probe(path)
    except video_reader.VideoReadError as e:
      raise NotAVideo(f'{job.name}: cannot be read as a video ({e})') from None
    with self._lock:
      prediction = predict.predict([path], self.model_dir)[0]
      if prediction.error:
        raise NotAVideo(f'{job.name}: {prediction.error}')
      line = timeline.run(path, self.model_dir, job.folder, self.window_s, self.stride_s,
                          self.threshold)
      segments = [dict(s, thumbnail=thumb) for s, thumb in
                  zip(line['segments'], thumbnails(path, line['segments'], job.folder))]
      try:
        attention = {k: os.path.basename(v) for k, v in
                     explain.render(path, self.model_dir, job.folder).items() if k != 'grid'}
      except ValueError as e:
        attention = {'error': str(e)}
    classes = list(predict.clip_config_of(self.model_dir).class_names)
    source = ({'upload': os.path.basename(path)} if path == job.upload_path else
              {'library': os.path.relpath(path, os.path.realpath(self.videos_dir))})
    result = {'job': job.id, 'video': job.name, 'label': prediction.label,
              'probability': prediction.probability,
              'positive_class': prediction.positive_class,
              'positive_probability': prediction.positive_probability,
              'duration_s': round(info.duration_s, 3), 'threshold': self.threshold,
              'timeline': os.path.basename(line['png']), 'segments': segments,
              'attention': attention, 'source': source,
              'source_path': os.path.abspath(path), 'model': self.model_dir, 'classes': classes}
    with open(os.path.join(job.folder, RESULT_FILE), 'w') as f:
      json.dump(result, f, indent=1)
    return result


def thumbnails(path: str, segments: List[Dict[str, float]], folder: str) -> List[Optional[str]]:
  """A JPEG of the middle frame of each segment, `THUMB_WIDTH` wide: file names in `folder`."""
  names: List[Optional[str]] = []
  capture = video_reader.open_video(path)
  try:
    for i, s in enumerate(segments):
      capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * (s['start_s'] + s['end_s']) / 2)
      ok, frame = capture.read()
      if not ok:
        names.append(None)
        continue
      h, w = frame.shape[:2]
      small = cv2.resize(frame, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))),
                         interpolation=cv2.INTER_AREA)
      names.append(f'segment-{i + 1:03d}.jpg')
      cv2.imwrite(os.path.join(folder, names[-1]), small)
  finally:
    capture.release()
  return names


# --- pages -----------------------------------------------------------------------------------
_STYLE = """<style>
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.4em} .error{color:#b00020;font-weight:bold} .muted{color:#666}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
#label.Violence{color:#b00020} img{max-width:100%}
video{width:640px;max-width:100%;background:#000;display:block}
#bar{position:relative;width:640px;max-width:100%;height:16px;background:#eee;margin-top:2px}
#bar .seg{position:absolute;top:0;height:100%;background:#e0a000;cursor:pointer}
#bar .seg[data-verdict=violent]{background:#b00020} #bar .seg[data-verdict="not violent"]{background:#2e7d32}
#bar .seg[data-verdict=unsure]{background:#888} #bar .seg.selected{outline:2px solid #000}
#missed-start,#missed-end{width:5em}
#cursor{position:absolute;top:0;height:100%;width:2px;background:#1565c0;left:0}
tr.selected{background:#fff3c4}
</style>"""

_SCRIPT = """<script>
const msg = document.getElementById('message');
async function send(url, body) {
  msg.className = ''; msg.textContent = 'Analysing… (a few seconds)';
  let reply;
  try { reply = await fetch(url, {method: 'POST', body: body}); }
  catch (e) { msg.className = 'error'; msg.textContent = 'The server did not answer: ' + e; return; }
  const data = await reply.json().catch(() => ({error: 'unreadable reply (HTTP ' + reply.status + ')'}));
  if (!reply.ok) { msg.className = 'error'; msg.textContent = data.error; return; }
  window.location.href = data.url;
}
document.getElementById('upload').onclick = () => {
  const file = document.getElementById('file').files[0];
  if (!file) { msg.className = 'error'; msg.textContent = 'Choose a video file first.'; return; }
  send('/review/upload?name=' + encodeURIComponent(file.name), file);
};
const pick = document.getElementById('pick');
if (pick) pick.onclick = () => send('/review/library',
    JSON.stringify({name: document.getElementById('library').value}));
</script>"""


def index_page(servable, library: List[str]) -> str:
  e = html.escape
  options = ''.join(f'<option>{e(n)}</option>' for n in library)
  picker = (f'<p>Or pick from the library: <select id="library">{options}</select> '
            '<button id="pick">Review</button></p>' if library else '')
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>vivit-tfx review</title>'
          f'{_STYLE}</head><body><h1>Violence review</h1>'
          f'<p class="muted">Model {e(servable.name)} version {servable.version} '
          f'({e(servable.path)}); REST API at <code>/v1/models/{e(servable.name)}</code>.</p>'
          '<p>Upload a video: <input type="file" id="file" accept="video/*"> '
          '<button id="upload">Review</button></p>'
          f'{picker}<p id="message"></p>{_SCRIPT}</body></html>')


def media_url(r: Dict[str, Any]) -> str:
  """Where the page's player gets the reviewed video ('' for a review made before the player)."""
  source = r.get('source') or {}
  if 'upload' in source:
    return f'/files/{r["job"]}/{urllib.parse.quote(source["upload"])}'
  if 'library' in source:
    return '/videos/' + urllib.parse.quote(source['library'])
  return ''


_PLAYER_SCRIPT = """<script>
const player = document.getElementById('player');
const bar = document.getElementById('bar');
const note = document.getElementById('verdict-message');
const duration = parseFloat(bar.dataset.duration) || 1;
const marks = n => document.querySelectorAll(  // a segment's block on the bar and its row
    '#bar .seg[data-segment="' + n + '"], tr[data-segment="' + n + '"]');
function jump(el) {
  player.currentTime = parseFloat(el.dataset.start);
  document.querySelectorAll('.selected').forEach(x => x.classList.remove('selected'));
  marks(el.dataset.segment).forEach(x => x.classList.add('selected'));
  bar.dataset.selected = el.dataset.segment;
}
document.querySelectorAll('.seg, .jump').forEach(el => el.onclick = () => jump(el));
player.ontimeupdate = () => document.getElementById('cursor').style.left =
    Math.min(100, 100 * player.currentTime / duration) + '%';
async function keep(body) {
  note.className = ''; note.textContent = 'Saving…';
  let reply;
  try {
    reply = await fetch(bar.dataset.verdicts, {method: 'POST', body: JSON.stringify(body),
                                               headers: {'Content-Type': 'application/json'}});
  } catch (e) { note.className = 'error'; note.textContent = 'The server did not answer: ' + e; return null; }
  const data = await reply.json().catch(() => ({error: 'not kept (HTTP ' + reply.status + ')'}));
  if (!reply.ok) { note.className = 'error'; note.textContent = data.error; return null; }
  note.textContent = 'Kept.';
  return data;
}
document.querySelectorAll('button.verdict').forEach(b => b.onclick = async () => {
  const kept = await keep({segment: parseInt(b.dataset.segment), verdict: b.dataset.verdict});
  if (!kept) return;
  document.getElementById('kept-' + kept.segment).textContent = kept.verdict + ' (' + kept.reviewer + ')';
  marks(kept.segment).forEach(x => x.dataset.verdict = kept.verdict);
});
const now = id => () => { document.getElementById(id).value = player.currentTime.toFixed(1); };
document.getElementById('missed-start-now').onclick = now('missed-start');
document.getElementById('missed-end-now').onclick = now('missed-end');
document.getElementById('missed-add').onclick = async () => {
  const kept = await keep({missed: {start_s: parseFloat(document.getElementById('missed-start').value),
                                    end_s: parseFloat(document.getElementById('missed-end').value),
                                    'class': document.getElementById('missed-class').value}});
  if (!kept) return;
  const li = document.createElement('li');
  li.textContent = kept.start_s.toFixed(1) + '–' + kept.end_s.toFixed(1) + ' s: ' + kept['class'] +
      ' (' + kept.reviewer + ')';
  document.getElementById('missed').appendChild(li);
};
</script>"""


def _verdict_cells(n: int, kept: Dict[str, Any]) -> str:
  buttons = ''.join(f'<button class="verdict" data-segment="{n}" data-verdict="{v}">{v}</button> '
                    for v in verdicts.SEGMENT_VERDICTS)
  shown = f'{kept["verdict"]} ({kept.get("reviewer") or "?"})' if kept else '—'
  return f'<td>{buttons}</td><td><span class="kept" id="kept-{n}">{html.escape(shown)}</span></td>'


def _review_panel(r: Dict[str, Any], kept: Dict[str, Any], segments: str) -> str:
  """The player, its time bar with the segments, the segments' table (`segments`, with
  their verdicts) and the missed-stretch form."""
  e, duration = html.escape, max(r['duration_s'], 1e-3)
  blocks = ''.join(
      f'<div class="seg" data-segment="{n}" data-start="{s["start_s"]}" '
      f'data-verdict="{e(kept["segments"].get(n, {}).get("verdict", ""))}" '
      f'style="left:{100 * s["start_s"] / duration:.3f}%;'
      f'width:{max(0.5, 100 * (s["end_s"] - s["start_s"]) / duration):.3f}%" '
      f'title="segment {n}: {s["start_s"]:.1f}–{s["end_s"]:.1f} s"></div>'
      for n, s in enumerate(r['segments'], 1))
  classes = r.get('classes') or [r.get('positive_class') or '']
  options = ''.join(f'<option{" selected" if c == r.get("positive_class") else ""}>{e(c)}'
                    f'</option>' for c in classes)
  missed = ''.join(f'<li>{m["start_s"]:.1f}–{m["end_s"]:.1f} s: {e(str(m["class"]))} '
                   f'({e(m.get("reviewer") or "?")})</li>' for m in kept['missed'])
  url = media_url(r)
  player = (f'<video id="player" controls preload="metadata" src="{e(url)}"></video>' if url
            else '<p class="muted" id="player">This review was made before the player.</p>')
  return (f'<h2>Video</h2>{player}'
          f'<div id="bar" data-duration="{duration}" data-verdicts="/review/{r["job"]}/verdicts">'
          f'{blocks}<div id="cursor"></div></div>'
          f'<p id="verdict-message"></p>{segments}'
          f'<h2>Missed by the model</h2><ul id="missed">{missed}</ul>'
          '<p>From <input id="missed-start" type="number" step="0.1" min="0" size="6"> '
          '<button id="missed-start-now">now</button> to '
          '<input id="missed-end" type="number" step="0.1" min="0" size="6"> '
          '<button id="missed-end-now">now</button> s, class '
          f'<select id="missed-class">{options}</select> '
          '<button id="missed-add">Record missed stretch</button></p>')


def result_page(r: Dict[str, Any], kept: Optional[Dict[str, Any]] = None) -> str:
  """A review's page; `kept`: `VerdictLog.of_job` (the verdicts shown as recorded)."""
  e = html.escape
  kept = kept or {'segments': {}, 'missed': []}
  files = f'/files/{r["job"]}/'
  rows = ''.join(
      f'<tr id="segment-{i + 1}" data-segment="{i + 1}"><td>{i + 1}</td><td><a class="jump" '
      f'href="#player" data-segment="{i + 1}" data-start="{s["start_s"]}">'
      f'{s["start_s"]:.1f} s</a></td><td>{s["end_s"]:.1f} s</td>'
      f'<td>{s["peak_score"]:.3f}</td><td>'
      + (f'<img class="thumb" src="{files}{s["thumbnail"]}" width="{THUMB_WIDTH}">'
         if s.get('thumbnail') else '') + '</td>'
      + _verdict_cells(i + 1, kept['segments'].get(i + 1)) + '</tr>'
      for i, s in enumerate(r['segments']))
  segments = (f'<table id="segments"><tr><th>#</th><th>start</th><th>end</th><th>peak</th>'
              f'<th>frame</th><th>verdict</th><th>kept</th></tr>{rows}</table>'
              if r['segments'] else
              f'<p id="segments">No segment at or above {r["threshold"]}.</p>')
  attention = r['attention']
  positive = (f', P({e(r["positive_class"])}) = {r["positive_probability"]:.3f}'
              if r.get('positive_class') else '')
  overlay = (f'<p class="muted">{e(attention["error"])}</p>' if 'error' in attention else
             f'<img id="attention" src="{files}{attention["gif"]}" alt="attention overlay"> '
             f'<p><img src="{files}{attention["png"]}" alt="attention strip"></p>')
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>{e(r["video"])} — review'
          f'</title>{_STYLE}</head><body><p><a href="/">← another video</a></p>'
          f'<h1>{e(r["video"])}</h1>'
          f'<p>Label: <b id="label" class="{e(r["label"])}">{e(r["label"])}</b> '
          f'(p = <span id="probability">{r["probability"]:.3f}</span>{positive}; '
          f'{r["duration_s"]:.1f} s)</p>'
          f'{_review_panel(r, kept, "<h2>Flagged segments</h2>" + segments)}'
          f'<h2>Timeline</h2><img id="timeline" src="{files}{r["timeline"]}" '
          f'alt="violence probability over time">'
          f'<h2>Where the model looks</h2>{overlay}{_PLAYER_SCRIPT}</body></html>')
