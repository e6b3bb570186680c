"""Errors the user can fix, and how the command-line tools report them.

A :class:`UserError` is raised for input the user gave: a config value out of range, a
misspelt key, a missing checkpoint, an unreachable node. Each names what is wrong and what is
allowed. The command-line tools (``twin-train``, ``twin-eval``, ``twin-exploit``,
``twin-replay``, ``twin-run``, ``twin-sweep``, ``twin-bench``) print its message on one line,
prefixed with the tool's name, and exit with status 2, without a traceback
(:func:`user_errors`). Any other exception is a bug and keeps its traceback.

The concrete errors keep a standard base as well (``ConfigError`` is a ``ValueError``,
``CheckpointError`` a ``FileNotFoundError``), so code that catches those still does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: exit status of a command-line tool given bad input (as argparse's)
USAGE_EXIT = 2


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what is allowed."""


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Run a command-line tool's body: a :class:`UserError` is printed as ``prog: message`` on
    standard error, on one line (:func:`one_line`), and ends the process with status 2
    (``SystemExit``, which Hydra's job runner lets through, so it works inside a
    ``@hydra.main`` function too)."""
    try:
        yield
    except UserError as e:
        print(f"{prog}: {one_line(str(e))}", file=sys.stderr, flush=True)
        raise SystemExit(USAGE_EXIT) from None


def one_line(message: str) -> str:
    """``message`` on one line: its non-blank lines, stripped, joined with ``; `` (some
    library messages wrapped in a UserError, e.g. Hydra's, span several lines)."""
    return "; ".join(ln.strip() for ln in message.splitlines() if ln.strip())
