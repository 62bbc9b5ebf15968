"""Readers for every input the pipeline ingests: Gaia DR3 XP spectra in all download formats, Gaia
photometry, APOGEE DR17 labels, and the authors' published catalogue. See docs/data-formats.md."""
from ingest.readers.apogee import read_apogee
from ingest.readers.catalogue import read_catalogue, read_norm_npz
from ingest.readers.errors import ReaderError, UnknownFormatError, WrongKindError
from ingest.readers.photometry import read_photometry
from ingest.readers.xp import read_xp

__all__ = ["read_xp", "read_photometry", "read_apogee", "read_catalogue", "read_norm_npz",
           "ReaderError", "UnknownFormatError", "WrongKindError"]
# The cross-match duplicate rule and the quality flags live in shared.quality (one implementation).
