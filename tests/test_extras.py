"""A command run without the setup.py extra it needs stops with one line naming the extra and
the pip command, exit status 1, before doing any work (the extra's module is hidden here)."""
import sys

import pytest

from vivit_tfx import cli


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
