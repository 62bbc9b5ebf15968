"""The optional progress callback every long reader accepts: ``progress(done, total, message)``."""
from __future__ import annotations

from typing import Callable, Optional

Progress = Optional[Callable[[int, Optional[int], str], None]]


def report_progress(progress: Progress, done: int, total: int | None, message: str) -> None:
    if progress is not None:
        progress(done, total, message)
