"""``python -m abawbench``: the command line, also as ``torchrun -m abawbench run ...``."""

import sys

from abawbench.cli import main

sys.exit(main())
