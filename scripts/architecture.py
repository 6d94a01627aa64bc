"""The package picture of docs/architecture.md, drawn from the code's own import statements.

    python scripts/architecture.py            # writes docs/architecture.dot (+ .svg with Graphviz)
    python scripts/architecture.py --check    # exit 1, one line each, on an import that goes up

`LAYERS` is the rule: a module imports only from its own package or from packages listed before
it. The picture shows the packages in that order with one arrow per importing pair, beside the
pipeline's data flow, each step labelled with the package that implements it.
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Set, Tuple

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
PACKAGE = 'vivit_tfx'

# Bottom to top. Top-level modules count as packages of their own name.
LAYERS: Tuple[Tuple[str, str], ...] = (
    ('outputs', 'files written into a folder the user names, never over theirs'),
    ('console', 'the quiet console of `vivit-tfx run`'),
    ('extras', 'one line when an optional extra is missing'),
    ('data', 'video reading, sampling, resize-and-crop, clip records, layouts, ingestion'),
    ('schemas', 'the curated schema of the raw clip records'),
    ('models', 'ViViT, checkpoints, preprocessing_fn, training, export, run_fn'),
    ('inference', 'predict, timeline, saliency, watch, serve'),
    ('components', 'TFX components: VideoExampleGen, ValidationGate, ClipTransform, schema, TFLiteExport'),
    ('audit', 'ML Metadata: runs, lineage, TFMA results, report, run summary'),
    ('pipeline', 'configuration, wiring (create_pipeline), runners'),
    ('kubeflow', 'KubeflowV2DagRunner compile, image'),
    ('scan', '`vivit-tfx scan`: an archive on Beam, resumable, drift'),
    ('bench', 'benchmarks that print tables'),
    ('cli', 'the `vivit-tfx` command'),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}

# The pipeline's data flow: (step, package that implements it), in order.
DATA_FLOW = (
    ('videos (5 layouts)', ''),
    ('ingest: clip tf.Examples + manifest', 'data'),
    ('ImportExampleGen / VideoExampleGen', 'components'),
    ('StatisticsGen, SchemaGen, ExampleValidator, ValidationGate', 'components'),
    ('Transform (preprocessing_fn)', 'models'),
    ('PretrainTrainer (VideoMAE, optional)', 'models'),
    ('Trainer (ViViT run_fn)', 'models'),
    ('Evaluator (TFMA) + blessing', 'pipeline'),
    ('Pusher: TF Serving layout', 'pipeline'),
    ('predict, timeline, watch, serve', 'inference'),
    ('lineage, report (ML Metadata)', 'audit'),
)


def package_of(relpath: str) -> str:
  """'data/ingest.py' → 'data'; 'outputs.py' → 'outputs'."""
  first = relpath.split(os.sep)[0]
  return first[:-3] if first.endswith('.py') else first


def import_edges(root: str = ROOT) -> Dict[Tuple[str, str], List[str]]:
  """(importing package, imported package) → the importing files, for project imports."""
  edges: Dict[Tuple[str, str], List[str]] = {}
  base = os.path.join(root, PACKAGE)
  for folder, _, files in os.walk(base):
    for name in sorted(f for f in files if f.endswith('.py')):
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, base)
      with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):  # `from vivit_tfx import outputs` names modules
          names = ([f'{PACKAGE}.{a.name}' for a in node.names] if node.module == PACKAGE else
                   [node.module or ''])
        else:
          names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for dotted in names:
          parts = dotted.split('.')
          if len(parts) > 1 and parts[0] == PACKAGE and parts[1] != package_of(rel):
            edges.setdefault((package_of(rel), parts[1]), []).append(rel)
  return edges


def upward_imports(edges) -> List[str]:
  """One line per import that reaches a package above (or unknown to) `LAYERS`."""
  return [f'{PACKAGE}/{f}: imports {PACKAGE}.{b} ({a} is below {b} in LAYERS)'
          if a in RANK and b in RANK else f'{PACKAGE}/{f}: package {a if a not in RANK else b} '
          'is not in LAYERS (scripts/architecture.py)'
          for (a, b), files in sorted(edges.items())
          if not (a in RANK and b in RANK and RANK[b] < RANK[a]) for f in sorted(set(files))]


def packages(root: str = ROOT) -> Set[str]:
  """Every package and top-level module of the tree."""
  base = os.path.join(root, PACKAGE)
  return {package_of(n) for n in os.listdir(base)
          if (n.endswith('.py') and n != '__init__.py') or
          os.path.isfile(os.path.join(base, n, '__init__.py'))}


def dot(edges) -> str:
  """The picture as Graphviz DOT: packages top-down with their imports; the data flow."""
  present = packages()
  lines = ['digraph architecture {', '  rankdir=TB; newrank=true;',
           '  node [shape=box, fontname="Helvetica", fontsize=10];',
           '  edge [color="#777777", arrowsize=0.6];',
           '  subgraph cluster_packages {',
           '    label="packages (an arrow: imports; none goes up)"; fontname="Helvetica";']
  for name, what in LAYERS:
    if name in present:
      lines.append(f'    "{name}" [label="{name}\\n{what}"];')
  for (a, b) in sorted(edges):
    lines.append(f'    "{a}" -> "{b}";')
  lines.append('  }')
  lines += ['  subgraph cluster_flow {',
            '    label="data flow (package that implements each step)"; fontname="Helvetica";',
            '    node [shape=note, style=filled, fillcolor="#f4f4f4"];',
            '    edge [color="#c0392b", arrowsize=0.8];']
  for i, (step, package) in enumerate(DATA_FLOW):
    label = f'{step}\\n[{package}]' if package else step
    lines.append(f'    "flow{i}" [label="{label}"];')
  lines.append('    ' + ' -> '.join(f'"flow{i}"' for i in range(len(DATA_FLOW))) + ';')
  lines += ['  }', '}']
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true', help='only check the layer rule')
  parser.add_argument('--out', default=os.path.join(ROOT, 'docs', 'architecture.dot'),
                      help='where the DOT file goes (an .svg is written beside it)')
  args = parser.parse_args(argv)
  edges = import_edges()
  problems = upward_imports(edges)
  for line in problems:
    print(line)
  if args.check:
    return 1 if problems else 0
  with open(args.out, 'w', encoding='utf-8') as f:
    f.write(dot(edges))
  print(f'wrote {os.path.relpath(args.out)}')
  if shutil.which('dot'):
    svg = os.path.splitext(args.out)[0] + '.svg'
    subprocess.run(['dot', '-Tsvg', args.out, '-o', svg], check=True)
    print(f'wrote {os.path.relpath(svg)}')
  else:
    print('Graphviz `dot` not found: the .svg was not redrawn (apt install graphviz)')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main())
