"""The progress callback every long piece of work accepts: ``progress(done, total, message)``, where ``total``
is None while unknown. Readers, loaders, training and analyses all take it; the CLI shows it as a live line and
the job runner stores it on the job."""
from __future__ import annotations

from typing import Callable, Optional

Progress = Callable[[int, Optional[int], str], None]


def report_progress(progress: Progress | None, done: int, total: int | None, message: str) -> None:
    if progress is not None:
        progress(done, total, message)
