"""Errors the readers raise for a whole file (a bad *row* is never an exception: it becomes a BadRow)."""
from __future__ import annotations


class ReaderError(Exception):
    """A file could not be read at all, or stopped being readable part-way (truncated gzip, broken zip, …).

    The message always names the file. Batches yielded before the error stay yielded: callers that need
    all-or-nothing per file (the database loader) wrap each file in one transaction and roll it back.
    """

    def __init__(self, file: str, message: str):
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


class UnknownFormatError(ReaderError):
    """The content matches none of the formats the readers understand."""


class WrongKindError(ReaderError):
    """The file is readable but holds another kind of data (photometry given as spectra, an allStar given as
    photometry, a DataLink zip of other products). Found by a directory walk or a glob it is passed over with
    a note; named explicitly it fails with this message."""
