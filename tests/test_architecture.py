"""The package layout: no import goes up the layers, the picture is the code's, the README's
layout table lists the tree."""
import os
import re

from tests.conftest import load_script

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
architecture = load_script('architecture')


def test_no_module_imports_from_a_package_above_it():
  assert architecture.upward_imports(architecture.import_edges()) == []


def test_an_upward_import_is_reported_with_its_file(tmp_path):
  package = tmp_path / 'vivit_tfx'
  for folder, body in (('data', 'from vivit_tfx.pipeline import configs\n'),
                       ('pipeline', 'from vivit_tfx import outputs\nimport vivit_tfx.data.x\n'),
                       ('mystery', '')):
    (package / folder).mkdir(parents=True)
    (package / folder / '__init__.py').write_text('')
    (package / folder / 'x.py').write_text(body)
  (package / 'mystery' / 'x.py').write_text('from vivit_tfx.data import x\n')
  edges = architecture.import_edges(str(tmp_path))
  assert set(edges) == {('data', 'pipeline'), ('pipeline', 'outputs'), ('pipeline', 'data'),
                        ('mystery', 'data')}
  assert architecture.upward_imports(edges) == [
      'vivit_tfx/data/x.py: imports vivit_tfx.pipeline (data is below pipeline in LAYERS)',
      'vivit_tfx/mystery/x.py: package mystery is not in LAYERS (scripts/architecture.py)']


def test_the_committed_picture_is_drawn_from_todays_imports():
  with open(os.path.join(ROOT, 'docs', 'architecture.dot'), encoding='utf-8') as f:
    committed = f.read()
  assert committed == architecture.dot(architecture.import_edges()), (
      'the imports changed: run `python scripts/architecture.py` and commit docs/architecture.*')


def test_readme_layout_table_names_every_package_of_the_tree():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    rows = re.findall(r'^\| `vivit_tfx/([\w.]+?)/?` \|', f.read(), re.M)
  listed = {name[:-3] if name.endswith('.py') else name for name in rows}
  assert listed == architecture.packages()
  assert set(dict(architecture.LAYERS)) >= architecture.packages()
