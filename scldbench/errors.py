"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ScldbenchError(Exception):
    """An error caused by input the user can fix; the CLI prints it on one line, without a traceback."""


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for names close to `name`, or '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
