"""How a path argument names files, one rule for the CLI and the loaders (README "Your own data"):
``~`` is expanded; a glob (``*``, ``?``, ``[...]``; ``**`` also crosses folders) is expanded to its matches,
sorted; a glob that matches nothing, or a plain path that does not exist, is an error naming the argument."""
from __future__ import annotations

import glob
import os
from pathlib import Path

GLOB_CHARS = "*?["


def is_glob(text: str | os.PathLike) -> bool:
    return any(c in os.fspath(text) for c in GLOB_CHARS)


def expand_path(item: str | os.PathLike) -> list[Path]:
    """The existing files or folders ``item`` names, by the rule above; FileNotFoundError if none."""
    text = os.path.expanduser(os.fspath(item))
    if is_glob(item):             # what the user typed decides, not what ~ expanded to
        found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if os.path.exists(p)]
        if not found:
            raise FileNotFoundError(f"{item}: no file or directory matches")
        return found
    if not os.path.exists(text):
        raise FileNotFoundError(f"{item}: no such file or directory")
    return [Path(text)]
