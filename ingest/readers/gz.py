"""gzip streams, through ISA-L (PyPI ``isal``) when it is installed: 2.5-5x faster inflation than zlib on
the bulk ``*.csv.gz`` files, where decompression is otherwise the slowest stage. Falls back to ``gzip``."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

try:  # optional accelerator
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
    ACCELERATED = True
    GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, gzip.BadGzipFile,
                                                    _isal_zlib.error)
except ImportError:  # pragma: no cover - depends on the environment
    _igzip = None
    ACCELERATED = False
    GZIP_ERRORS = (EOFError, OSError, zlib.error, gzip.BadGzipFile)


def open_gzip(path: str | Path) -> BinaryIO:
    """A binary reading stream of the decompressed content."""
    if _igzip is not None:
        return _igzip.open(path, "rb")
    return gzip.open(path, "rb")
