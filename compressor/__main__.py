"""``python -m compressor`` (also what ``torchrun -m compressor run SPEC`` launches)."""

import sys

from compressor.cli import main

sys.exit(main())
