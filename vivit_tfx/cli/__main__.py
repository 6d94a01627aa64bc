"""`python -m vivit_tfx.cli …`: the `vivit-tfx` command."""
import sys

from vivit_tfx.cli import main

sys.exit(main())
