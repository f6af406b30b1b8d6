"""``python -m compressor`` (also what ``torchrun -m compressor run SPEC`` launches)."""

from compressor.cli import entry

entry()
