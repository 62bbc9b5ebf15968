"""XP spectra and photometry in and out of the database, fast: the one public interface of the modules below.

- db/spectra_write.py: batches of spectra and photometry upserted (COPY on PostgreSQL, db/bulk.py);
- db/spectra_read.py: reads into numpy in the model's order (``read_spectra``, ``iter_spectra``), counts and
  id lists of a selection;
- db/spectra_blocks.py: one keyset page of rows from either backend, copied into the output arrays;
- db/copy_stream.py: PostgreSQL's binary COPY received into a reused buffer (in C without the GIL, db/_pgcopy.c);
- db/parallel_read.py: large PostgreSQL reads as parallel streams (how many: the caller's Settings.read_streams);
- db/shards.py: a selection cut into source_id ranges for inference shards.
"""
from __future__ import annotations

from db.copy_stream import fast_copy_available
from db.shards import quantile_ranges, source_id_quantiles
from db.spectra_blocks import QUERY_BYTES
from db.spectra_read import DEFAULT_CHUNK_ROWS, count, has_correlations, iter_spectra, read_spectra, selected_source_ids
from db.spectra_write import write_photometry, write_xp_batch, xp_spectra_columns

__all__ = ["DEFAULT_CHUNK_ROWS", "QUERY_BYTES", "count", "fast_copy_available", "has_correlations",
           "iter_spectra", "quantile_ranges", "read_spectra", "selected_source_ids", "source_id_quantiles",
           "write_photometry", "write_xp_batch", "xp_spectra_columns"]
