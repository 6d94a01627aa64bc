"""The review page of `vivit-tfx serve`, driven in a real headless browser (Debian's chromium).

The browser is installed with apt when it is missing and this runs as root; otherwise the tests
skip and say why.
"""
import os
import shutil

import pytest

from vivit_tfx.data import synthetic
from vivit_tfx.inference import predict, reviews_export, server, verdicts
from tests.test_serve import free_port

# Debian's chromium and chromium-driver: `.ci/run` installs them, a test never does. Checked
# before the fixtures, so a machine without them does not train the model for nothing.
BINARIES = shutil.which('chromium'), shutil.which('chromedriver')
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not all(BINARIES), reason='no chromium/chromedriver: .ci/run installs them (apt-get '
    'install chromium chromium-driver)')]
webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed '
                                '(pip install -c constraints.txt selenium)')
from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top,g-bad-import-order
from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top,g-bad-import-order
from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top,g-bad-import-order

TOKEN = 'page-test-token-0123456789'


@pytest.fixture(scope='module')
def browser(site):
  """Headless chromium, logged in to `site` once (`?token=`, then the cookie)."""
  chromium, chromedriver = BINARIES
  options = webdriver.ChromeOptions()
  for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'):
    options.add_argument(flag)
  options.binary_location = chromium
  driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
  driver.get(site[0] + '/?token=' + TOKEN)
  assert driver.current_url.rstrip('/') == site[0]  # the token is out of the address bar
  yield driver
  driver.quit()


@pytest.fixture(scope='module')
def site(trained_run, tmp_path_factory):
  """(URL, work folder, videos folder, model version folder) of `serve` on the pushed model
  that has learned its data, its synthetic videos as the library."""
  config, _ = trained_run
  work = str(tmp_path_factory.mktemp('review_work'))
  tokens = os.path.join(work, 'tokens')
  with open(tokens, 'w') as f:
    f.write(f'reviewer:{TOKEN}\n')
  models = os.path.join(config.serving_dir, config.model_name)
  settings = server.ServerConfig(
      model_dir=models, model_name=config.model_name, port=free_port(), work_dir=work,
      videos_dir=config.videos_dir, threshold=0.0, token_file=tokens)  # flag every window
  with server.BackgroundServer(settings) as url:
    yield url, work, config.videos_dir, predict.newest_version(config.serving_dir,
                                                               config.model_name)


def _shown_as_predicted(browser, path: str, model_dir: str) -> str:
  """Asserts the page shows `predict`'s label and probabilities for `path`; returns the label."""
  expected = predict.predict([path], model_dir)[0]
  assert browser.find_element(By.ID, 'label').text == expected.label
  assert float(browser.find_element(By.ID, 'probability').text) == pytest.approx(
      expected.probability, abs=6e-4)  # shown with 3 decimals
  assert f'P(Violence) = {expected.positive_probability:.3f}' in browser.find_element(
      By.TAG_NAME, 'body').text
  return expected.label


def _files(root):
  return sorted((os.path.relpath(os.path.join(r, n), root), os.path.getmtime(os.path.join(r, n)))
                for r, _, names in os.walk(root) for n in names)


def test_upload_a_video_then_see_label_timeline_segments(site, browser, tmp_path):
  url, work, video_root, model_dir = site
  video = str(tmp_path / 'clip.mp4')
  synthetic.long_video(video, [1, 1], segment_s=2.0, seed=1)  # violent throughout
  library_before = _files(video_root)
  browser.get(url + '/')
  browser.find_element(By.ID, 'file').send_keys(video)
  browser.find_element(By.ID, 'upload').click()
  WebDriverWait(browser, 180).until(lambda d: d.find_elements(By.ID, 'label'))
  assert _shown_as_predicted(browser, video, model_dir) == 'Violence'
  timeline_width = browser.execute_script(
      "return document.getElementById('timeline').naturalWidth")
  assert timeline_width > 100  # the PNG loaded
  rows = browser.find_elements(By.CSS_SELECTOR, '#segments tr')
  assert len(rows) >= 2  # header + at least one flagged segment (threshold 0)
  thumbs = browser.find_elements(By.CSS_SELECTOR, '#segments img.thumb')
  assert thumbs and all(browser.execute_script('return arguments[0].naturalWidth', t) > 0
                        for t in thumbs)
  assert browser.find_elements(By.ID, 'attention')
  # Everything the review wrote is in the server's work folder; the library is untouched.
  job = os.path.join(work, 'jobs', browser.current_url.rstrip('/').rsplit('/', 1)[1])
  assert os.path.exists(os.path.join(job, 'clip.mp4'))
  assert os.path.exists(os.path.join(job, 'clip.timeline.png'))
  assert _files(video_root) == library_before


def test_a_file_that_is_not_a_video_gets_a_clear_message(site, browser, tmp_path):
  url, work, _, _ = site
  for name, content, words in (('notes.txt', b'hello', 'not a video file'),
                               ('fake.mp4', b'\x00' * 4096, 'cannot be read as a video')):
    path = tmp_path / name
    path.write_bytes(content)
    jobs = os.path.join(work, 'jobs')  # made by the first job: none when this test runs first
    jobs_before = set(os.listdir(jobs)) if os.path.isdir(jobs) else set()
    browser.get(url + '/')
    browser.find_element(By.ID, 'file').send_keys(str(path))
    browser.find_element(By.ID, 'upload').click()
    message = browser.find_element(By.ID, 'message')
    WebDriverWait(browser, 60).until(lambda d: message.get_attribute('class') == 'error')
    assert name in message.text and words in message.text, message.text
    assert (set(os.listdir(jobs)) if os.path.isdir(jobs) else set()) == jobs_before  # nothing left


def test_pick_a_video_from_the_library(site, browser):
  url, _, video_root, model_dir = site
  browser.get(url + '/')
  names = [o.text for o in browser.find_elements(By.CSS_SELECTOR, '#library option')]
  assert len(names) >= 20 and names[0].startswith('NonViolence')
  browser.find_element(By.ID, 'pick').click()
  WebDriverWait(browser, 180).until(lambda d: d.find_elements(By.ID, 'label'))
  assert browser.find_element(By.TAG_NAME, 'h1').text == os.path.basename(names[0])
  # The learned model gets the library's first video right, and the page shows its scores.
  path = os.path.join(video_root, names[0])
  assert _shown_as_predicted(browser, path, model_dir) == 'NonViolence'


def test_play_click_a_segment_and_record_verdicts(site, browser, tmp_path):
  url, work, _, _ = site
  source = str(tmp_path / 'source.mp4')
  synthetic.long_video(source, [1, 0], segment_s=2.0, seed=2)
  video = str(tmp_path / 'h264.mp4')  # a codec chromium plays (the synthetic mp4v is not one)
  reviews_export.cut(source, 0.0, 4.0, video)
  browser.get(url + '/')
  browser.find_element(By.ID, 'file').send_keys(video)
  browser.find_element(By.ID, 'upload').click()
  WebDriverWait(browser, 180).until(lambda d: d.find_elements(By.ID, 'label'))
  player = browser.find_element(By.ID, 'player')
  WebDriverWait(browser, 30).until(lambda d: d.execute_script(
      'return arguments[0].readyState', player) >= 1)  # the video loaded through the cookie
  segment = browser.find_element(By.CSS_SELECTOR, '#bar .seg')
  start = float(segment.get_attribute('data-start'))
  browser.execute_script('arguments[0].currentTime = 3.5', player)
  segment.click()  # jumps to the segment's start
  WebDriverWait(browser, 10).until(lambda d: abs(d.execute_script(
      'return arguments[0].currentTime', player) - start) < 0.1)
  assert browser.find_element(By.ID, 'segment-1').get_attribute('class') == 'selected'
  browser.find_element(By.CSS_SELECTOR, 'button.verdict[data-segment="1"]'
                       '[data-verdict="not violent"]').click()
  kept = browser.find_element(By.ID, 'kept-1')
  WebDriverWait(browser, 10).until(lambda d: kept.text == 'not violent (reviewer)')
  browser.find_element(By.ID, 'missed-start').send_keys('1')
  browser.find_element(By.ID, 'missed-end').send_keys('2')
  browser.find_element(By.ID, 'missed-add').click()
  WebDriverWait(browser, 10).until(
      lambda d: 'Violence (reviewer)' in d.find_element(By.ID, 'missed').text)
  job = browser.current_url.rstrip('/').rsplit('/', 1)[1]
  records, _ = verdicts.read(os.path.join(work, verdicts.FILE))
  mine = [(r['kind'], r['verdict'], r['reviewer']) for r in records if r['job'] == job]
  assert mine == [('segment', 'not violent', 'reviewer'), ('missed', 'missed', 'reviewer')]
  browser.refresh()  # shown again from the file
  assert browser.find_element(By.ID, 'kept-1').text == 'not violent (reviewer)'
