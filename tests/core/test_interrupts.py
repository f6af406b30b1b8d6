"""Ctrl-C and SIGTERM under the command line's handler: held inside deferred blocks, raised when they end, and a
second signal raised at once."""

from __future__ import annotations

import os
import signal

import pytest

from compressor.core.errors import Terminated
from compressor.core.interrupts import deferred, unwinding


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # the handler runs at the next bytecode of the main thread
        pass


def test_a_signal_inside_a_deferred_block_is_raised_when_it_ends() -> None:
    reached = []
    with unwinding(), pytest.raises(Terminated):
        with deferred():
            _terminate_self()
            reached.append("after the signal")  # the block goes on to its end
        reached.append("after the block")  # never: the held signal is raised as the block ends
    assert reached == ["after the signal"]


def test_a_second_signal_while_one_is_held_is_raised_at_once() -> None:
    reached = []
    with unwinding(), pytest.raises(Terminated):
        with deferred():
            _terminate_self()
            reached.append("held")
            _terminate_self()
            reached.append("never")
    assert reached == ["held"]
    with unwinding(), pytest.raises(Terminated):  # nothing stays held for the next block
        with deferred():
            reached.append("clean")
        _terminate_self()
    assert reached == ["held", "clean"]


def test_outside_a_deferred_block_a_signal_is_raised_at_once() -> None:
    with unwinding(), pytest.raises(Terminated):
        _terminate_self()
        pytest.fail("the signal was not raised")
