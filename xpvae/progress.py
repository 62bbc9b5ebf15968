"""Progress display for the CLI: a live line on a terminal, periodic lines in logs and CI."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, label: str, stream=None, interval: float = 5.0):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if not self.tty else 0.1
        self._last = 0.0
        self._last_text = ""

    def __call__(self, done: int, total: int | None, message: str = "") -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - self._last < self.interval and not finished:
            return
        self._last = now
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
            text = f"{self.label} [{bar}] {done:,}/{total:,} {message}"
        else:
            text = f"{self.label} {done:,} {message}"
        if text == self._last_text:
            return
        self._last_text = text
        if self.tty:
            self.stream.write("\r\033[K" + text[:200])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last_text:
            self.stream.write("\n")
            self.stream.flush()
