"""A command run without the setup.py extra it needs stops with one line naming the extra and
the pip command, exit status 1, before doing any work (the extra's module is hidden here)."""
import sys

import pytest

from vivit_tfx import cli
from vivit_tfx.audit import run_summary


@pytest.mark.parametrize('module,argv,extra', [
    ('starlette', ['serve', '--model-dir', '{tmp}'], 'serve'),
    ('matplotlib', ['report', '--output-root', '{tmp}'], 'report'),
])
def test_missing_extra_is_one_line_and_exit_1(module, argv, extra, tmp_path, monkeypatch,
                                              capsys):
  monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
  monkeypatch.delitem(sys.modules, 'vivit_tfx.inference.server', raising=False)
  assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 1
  out, err = capsys.readouterr()
  assert err == (f"vivit-tfx {argv[0]} needs the {extra} extra: "
                 f"pip install 'vivit-violence-tfx[{extra}]'\n")
  assert out == '' and not list(tmp_path.iterdir())  # nothing written


def test_run_without_the_report_extra_says_why_its_report_is_missing(monkeypatch):
  """`run`'s pipeline needs only the core: its summary names the missing extra instead."""
  monkeypatch.setitem(sys.modules, 'matplotlib', None)
  summary = run_summary.RunSummary('run-1', 1.0, {}, {}, True, None, 'metadata.db', 'root')
  run_summary.add_report(summary, settings=None)  # stops before reading the settings
  assert summary.report == ("not written: the report extra is not installed (no module "
                            "'matplotlib'): pip install 'vivit-violence-tfx[report]'")
  assert "report: not written: the report extra" in summary.to_text()
