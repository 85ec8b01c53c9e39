"""User-facing errors and the exit codes of the command line, declared once.

Exit codes of `scldbench`:

| code | meaning |
|------|---------|
| 0    | every job finished ok (or the command had nothing to run) |
| 1    | the run finished, but at least one job failed (its record says why) |
| 2    | bad input: a suite, option, data file or run folder the user can fix; nothing was run |
| 130  | interrupted by Ctrl-C (SIGINT); finished jobs are kept |
| 143  | terminated by SIGTERM (a scheduler's kill); finished jobs are kept |
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class ScldbenchError(Exception):
    """An error caused by input the user can fix; the CLI prints it on one line, without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops like on Ctrl-C (finished jobs kept), with its own exit code."""


class JobTimeout(BaseException):
    """A job ran past its time limit. A BaseException, so that a plugin's `except Exception` cannot swallow it."""


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for names close to `name`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
