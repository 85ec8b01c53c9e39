"""The report commands of the CLI (`report`, `leaderboard`), registered on the main Typer app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console


def register(app: typer.Typer, friendly: Callable[..., Any], console: Console) -> None:
    """Add the report commands to `app`; `friendly` turns user errors into one-line messages."""
