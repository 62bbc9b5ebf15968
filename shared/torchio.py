"""Torch files without code: every .pt the project reads or writes goes through here.

A pickle can name any Python callable and have it run while loading, so ``load_plain`` loads with
``weights_only=True``: only tensors, numbers, strings, None and plain containers come back; any other object
refuses the whole file. Writers store only such data (``plain`` turns numpy into tensors and plain values).
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


class TorchFileError(ValueError):
    """A torch file that cannot be used: refused (it holds objects beyond plain data) or unreadable.
    The message is one line that names the file."""


def plain(obj: Any) -> Any:
    """numpy → tensors and Python scalars, tuples → lists: data that ``load_plain`` accepts."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # torch's refusal is a paragraph; the useful part follows "WeightsUnpickler error:"
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    line = found.group(1) if found else (text.splitlines()[0] if text else type(exc).__name__)
    return line.strip()


def load_plain(path: str | Path, what: str = "torch file") -> Any:
    """The contents of a torch file, refusing anything but plain data. ``what`` names the file's role in
    the one-line error message (e.g. 'training checkpoint')."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _reason(exc)
        named = re.search(r"GLOBAL (\S+)", reason)
        if named:   # the pickle names a callable or class: the very thing that lets a file run code
            raise TorchFileError(f"{path}: refused as {what}: it holds Python objects other than tensors and plain "
                                 f"data (here {named.group(1)}), and loading them could run code") from None
        raise TorchFileError(f"{path}: not a readable {what} (corrupt or of another format: {reason})") from None
    except OSError as exc:
        if exc.filename is not None:     # the file itself: missing, a directory, no permission
            raise TorchFileError(f"{path}: cannot read {what}: {exc.strerror}") from None
        raise TorchFileError(f"{path}: not a readable {what} (truncated, corrupt or of another format: "
                             f"{_reason(exc)})") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise TorchFileError(f"{path}: not a readable {what} (truncated, corrupt or of another format: "
                             f"{_reason(exc)})") from None


def load_format(path: str | Path, fmt: str, what: str, remedy: str = "") -> dict[str, Any]:
    """A file this project wrote (a model artifact, a training checkpoint): plain data (see load_plain) whose
    dict names ``fmt`` as its format. ValueError otherwise, one line naming the file, with ``remedy`` added."""
    path = Path(path)
    tail = f"; {remedy}" if remedy else ""
    try:
        d = load_plain(path, what)
    except TorchFileError as exc:
        raise TorchFileError(f"{exc}{tail}") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise ValueError(f"{path}: not an xpvae {what} (expected format {fmt!r}){tail}")
    return d


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
