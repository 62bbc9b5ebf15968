"""Opening a FITS file for the readers: one way, so every FITS reader streams and fails alike."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Iterator

from ingest.readers.errors import ReaderError


@contextlib.contextmanager
def open_fits(path: str | Path, file: str) -> Iterator[Any]:
    """The HDU list of ``path``, memory-mapped with HDUs read on demand (a 3 GB allStar costs no memory until
    its rows are sliced), with astropy's unit/ucd chatter on archive headers silenced. A file astropy cannot
    open is a ReaderError naming ``file``; FITS holds data only, so opening one runs nothing."""
    from astropy.io import fits
    try:
        hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ReaderError(file, f"not a readable FITS file: {exc}") from exc
    with hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield hdul
