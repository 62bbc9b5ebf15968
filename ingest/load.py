"""Loading files into the database: the plain functions behind the ingest jobs and `xpvae ingest …`.

Contract, for every loader:
- each file is loaded in ONE transaction: a file that fails part-way (unreadable, truncated gzip, a value the
  database refuses) leaves nothing of itself in the database, is reported, and the other files still load; a
  transient database failure (connection lost, lock timeout, deadlock after retries) is raised instead, for the
  job runner to retry — it is no fault of the file;
- a bad row is reported (file, row, column, why) and skipped; the rest of its file loads;
- a row repeating a key read before from the same file is reported as a duplicate and not loaded (the first
  is kept), so that for every file that loads: rows read = loaded + skipped + duplicates;
- memory stays bounded: readers yield chunks, each chunk is written before the next is read;
- re-loading a file changes nothing (upserts on the natural keys);
- ``progress(done, total, message)`` is called after every chunk (done/total count files);
- a file found by a directory walk or a glob that holds another kind of data (photometry given as spectra, a
  DataLink file of another product) is passed over with a note; named explicitly it fails with the reason; a
  directory or glob that gives nothing to load fails.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from sqlalchemy.engine import Engine

from db.bulk import analyze
from db.engine import is_lock_conflict, is_transient_db_error
from db.labels import write_apogee
from db.partitions import touched_pixels
from db.spectra import write_photometry, write_xp_batch
from ingest.readers.errors import WrongKindError
from ingest.readers.products import is_other_product
from shared.paths import expand_path, is_glob
from shared.progress import Progress
from shared.streams import read_ahead
from shared.xp import PHOTOMETRY_COLUMNS, POSITION_COLUMNS, BadRow, ReadReport, XPBatch

CATALOGUE_ID_PREFIX = "xp_apogee_cat:"   # apogee_id given to catalogue rows that carry no APOGEE_ID
# Rows per XP write: small enough that parsing the next chunk overlaps writing this one (with correlations a
# row is ~12.7 kB, so ~13 MB a chunk), large enough that per-chunk round trips stay negligible.
XP_CHUNK_ROWS = 1024
XP_CHUNK_ROWS_NO_CORRELATIONS = 8192
LOCK_CONFLICT_ATTEMPTS = 5      # loads of one file that a deadlock with a concurrent ingest may roll back


@dataclass
class FileResult(ReadReport):
    """What happened to one file: the reader's report (rows read, bad rows, duplicates, notes, other DataLink
    products; the reader fills it in place) and what loading adds to it."""
    rows_loaded: int = 0
    skipped: str | None = None     # why a file found by a directory walk or glob was passed over (not a failure)

    @property
    def path(self) -> str:
        return self.file

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def loaded(self) -> bool:
        return self.ok and self.skipped is None

    @property
    def rows_skipped(self) -> int:
        return len(self.bad_rows)

    @property
    def rows_duplicate(self) -> int:
        return len(self.duplicates)

    def to_dict(self) -> dict[str, Any]:
        """Its counts, without the bad rows themselves (the summary lists those)."""
        return {"path": self.path, "rows_read": self.rows_read, "rows_loaded": self.rows_loaded if self.ok else 0,
                "rows_skipped": self.rows_skipped, "rows_duplicate": self.rows_duplicate, "error": self.error,
                "skipped": self.skipped, "notes": self.notes, "other_products": self.other_products}


@dataclass
class IngestSummary:
    """The outcome of one ingest call: per file counts, bad rows and failures (JSON-able via to_dict)."""
    source: str
    files: list[FileResult] = field(default_factory=list)
    norm_path: str | None = None
    # the sky pixels the load wrote (db.partitions.touched_pixels), so only their partitions are analysed
    pixels: set[int] = field(default_factory=set)

    @property
    def files_ok(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def files_skipped(self) -> int:
        return sum(f.skipped is not None for f in self.files)

    @property
    def other_products(self) -> dict[str, int]:
        """DataLink files (zip members or files of a folder) of products other than XP_CONTINUOUS, by product."""
        out: dict[str, int] = {}
        for f in self.files:
            for product, n in f.other_products.items():
                out[product] = out.get(product, 0) + n
        return out

    @property
    def files_failed(self) -> int:
        return sum(not f.ok for f in self.files)

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files if f.ok)

    @property
    def rows_skipped(self) -> int:
        return sum(f.rows_skipped for f in self.files)

    @property
    def rows_duplicate(self) -> int:
        return sum(f.rows_duplicate for f in self.files)

    @property
    def bad_rows(self) -> list[BadRow]:
        return [b for f in self.files for b in f.bad_rows]

    @property
    def duplicates(self) -> list[BadRow]:
        return [d for f in self.files for d in f.duplicates]

    def to_dict(self, max_bad_rows: int = 1000) -> dict[str, Any]:
        bad, dup = self.bad_rows, self.duplicates
        return {
            "source": self.source, "files_ok": self.files_ok, "files_failed": self.files_failed,
            "files_skipped": self.files_skipped,
            "rows_read": self.rows_read, "rows_loaded": self.rows_loaded, "rows_skipped": self.rows_skipped,
            "rows_duplicate": self.rows_duplicate,
            "failed_files": [f.error for f in self.files if not f.ok],     # each names its file
            # files of other DataLink products are counted in other_products, not listed one by one
            "skipped_files": [f"{f.path}: {f.skipped}" for f in self.files
                              if f.skipped is not None and not is_other_product(Path(f.path).name)],
            "other_products": self.other_products,
            "notes": [f"{f.path}: {n}" for f in self.files for n in f.notes],
            "bad_rows": [str(b) for b in bad[:max_bad_rows]], "bad_rows_total": len(bad),
            "duplicate_rows": [str(d) for d in dup[:max_bad_rows]],
            "files": [f.to_dict() for f in self.files],
            "norm_path": self.norm_path,
        }


SUMMED = ("files_ok", "files_failed", "files_skipped", "rows_read", "rows_loaded", "rows_skipped", "rows_duplicate",
          "bad_rows_total")
LISTED = ("failed_files", "skipped_files", "notes", "files")


def merge_summary_dicts(source: str, parts: list[dict[str, Any]], max_bad_rows: int = 1000) -> dict[str, Any]:
    """One ingest's summary (IngestSummary.to_dict's shape) from the summaries of its parts (a fanned-out
    job's shards): counts summed, lists joined in the parts' order, the bad and duplicate rows kept to the
    first ``max_bad_rows`` as to_dict keeps them."""
    out: dict[str, Any] = {"source": source, **{k: sum(int(p.get(k) or 0) for p in parts) for k in SUMMED},
                           **{k: [x for p in parts for x in p.get(k) or []] for k in LISTED},
                           "bad_rows": [x for p in parts for x in p.get("bad_rows") or []][:max_bad_rows],
                           "duplicate_rows": [x for p in parts for x in p.get("duplicate_rows") or []][:max_bad_rows],
                           "other_products": {}, "norm_path": None}
    for p in parts:
        for product, n in (p.get("other_products") or {}).items():
            out["other_products"][product] = out["other_products"].get(product, 0) + n
    return out


# --- helpers ------------------------------------------------------------------------------------------------------
TABLE_SUFFIXES = (".csv", ".csv.gz", ".ecsv", ".ecsv.gz", ".fits", ".fit", ".fits.gz", ".xml", ".xml.gz",
                  ".vot", ".votable")


@dataclass(frozen=True)
class Found:
    """One file to ingest and how it was named: explicitly (a failure if it is of the wrong kind) or found
    by a directory walk or a glob (then passed over with a note)."""
    path: Path
    item: str        # the input that found it
    named: bool


def expand_inputs(paths: Iterable[str | Path] | str | Path, summary: IngestSummary, what: str = "data files",
                  suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> list[Found]:
    """The files named by ``paths`` (files, directories, globs), each once, in order. Directories and globs
    give the files ending in ``suffixes`` (the others are recorded in ``summary`` as passed over); a named
    file is taken whatever its name. An input that matches
    nothing, or a directory or glob without such files, becomes a failed entry (an empty directory never
    ingests "successfully"). Paths and globs are expanded by shared.paths.expand_path."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Found] = []
    seen: set[Path] = set()
    for item in paths:
        try:
            found = expand_path(item)
        except FileNotFoundError as exc:
            summary.files.append(FileResult(str(item), error=str(exc)))
            continue
        pattern = is_glob(item)
        n_files = 0
        for p in found:
            here = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []
            named = not pattern and not p.is_dir()
            files = [q for q in here if named or _data_name(q, suffixes)]
            for q in here:      # notes, manifests, checksums: listed as passed over, never read
                if q not in files and not q.name.startswith(".") and q.resolve() not in seen:
                    seen.add(q.resolve())
                    summary.files.append(FileResult(str(q), skipped="not a data file by its name"))
            n_files += len(files)
            for q in files:
                key = q.resolve()
                if key not in seen:
                    seen.add(key)
                    out.append(Found(q, str(item), named=named))
        if not n_files:
            summary.files.append(FileResult(str(item), error=f"{item}: no {what} in it (no file named "
                                                             f"*{', *'.join(suffixes)})"))
    return out


def _data_name(path: Path, suffixes: tuple[str, ...]) -> bool:
    """Walks and globs read data files only (not notes, manifests, hidden files, partial downloads)."""
    return not path.name.startswith(".") and path.name.lower().endswith(suffixes)


def expand_paths(paths: Iterable[str | Path] | str | Path, summary: IngestSummary, what: str = "data files",
                 suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> list[Path]:
    """The files named by ``paths``, all treated as named explicitly (see expand_inputs)."""
    return [f.path for f in expand_inputs(paths, summary, what, suffixes)]


def _fail_all_skipped(summary: IngestSummary, found: list[Found], what: str) -> None:
    """A directory or glob whose files were all passed over gave nothing: that is a failure, not a success."""
    results = {r.path: r for r in summary.files}
    for item in dict.fromkeys(f.item for f in found if not f.named):
        mine = [results[str(f.path)] for f in found if f.item == item and str(f.path) in results]
        if mine and all(r.skipped is not None for r in mine):
            summary.files.append(FileResult(item, error=f"{item}: no {what} among its {len(mine)} file(s); "
                                                        "all were passed over (see the skipped files)"))


def _load_file(engine: Engine, summary: IngestSummary, path: Path, n_files: int, progress: Progress | None,
               load: Callable[[Any, FileResult], None], named: bool = True) -> FileResult:
    """Run ``load(conn, result)`` for one file inside one transaction; failures roll it back.
    A file of the wrong kind fails when ``named``; found by a walk or glob it is passed over with a note.
    A lock conflict with a concurrent load of the same rows (a deadlock, possible when files overlap in
    different orders across chunks) rolls back only this file: it is loaded again from its start."""
    for attempt in range(1, LOCK_CONFLICT_ATTEMPTS + 1):
        result = FileResult(str(path))
        try:
            with engine.begin() as conn:
                load(conn, result)
            break
        except WrongKindError as exc:    # nothing of it was this kind of data: no rows read, no bad rows
            result.rows_loaded = result.rows_read = 0
            result.bad_rows, result.duplicates = [], []
            # named, it fails; found by a walk or glob, it is passed over (the reader's error is not the file's)
            result.error, result.skipped = (str(exc), None) if named else (None, exc.message)
            break
        except Exception as exc:   # one bad file must not stop the others; its transaction is rolled back
            if is_lock_conflict(exc) and attempt < LOCK_CONFLICT_ATTEMPTS:
                time.sleep(random.uniform(0.1, 0.5) * attempt)    # jitter: the two loads must not meet again
                continue
            if is_transient_db_error(exc):
                raise     # the database's trouble, not the file's: the job runner retries (a shard: alone)
            _record_failure(result, exc, path)
            break
    if attempt > 1:
        result.notes.append(f"loaded {attempt} times: a concurrent load of the same stars deadlocked with it")
    summary.files.append(result)
    if progress:
        state = (f"{result.rows_loaded} rows loaded" if result.loaded else
                 f"passed over ({result.skipped})" if result.ok else f"FAILED ({result.error})")
        progress(len(summary.files), n_files, f"{path.name}: {state}")
    return result


def _record_failure(result: FileResult, exc: Exception, path: Path) -> None:
    result.error = result.error or f"{type(exc).__name__}: {exc}"
    result.rows_loaded = 0     # rolled back
    if str(path) not in result.error:
        result.error = f"{path}: {result.error}"


def _analyze_if_loaded(engine: Engine, summary: IngestSummary, tables: tuple[str, ...],
                       pixels: set[int] | None = None) -> None:
    """Once per ingest call: the tables' statistics, of a partitioned table only the partitions holding the sky
    ``pixels`` the load wrote (db.bulk.analyze)."""
    if summary.rows_loaded:
        analyze(engine, tables, pixels)


def _chunk_progress(progress: Progress | None, n_done: int, n_files: int, path: Path, rows: int) -> None:
    if progress:
        progress(n_done, n_files, f"{path.name}: {rows} rows so far")


# --- Gaia XP ------------------------------------------------------------------------------------------------------
def ingest_gaia_xp(engine: Engine, paths: Iterable[str | Path] | str | Path, correlations: bool = True,
                   progress: Progress | None = None, chunk_rows: int | None = None) -> IngestSummary:
    """Load XP continuous spectra from files of any supported format (files, directories, globs).
    ``correlations=False`` drops the correlation arrays and leaves any stored ones untouched.
    ``chunk_rows``: rows per database write (default: ~13 MB of parsed data a chunk, so that reading the
    next chunk overlaps writing this one)."""
    return _ingest_files(engine, "gaia-xp", paths, progress, correlations=correlations, chunk_rows=chunk_rows)


def load_gaia_xp_files(engine: Engine, found: list[Found], summary: IngestSummary, progress: Progress = None,
                       n_files: int | None = None, correlations: bool = True, chunk_rows: int | None = None) -> None:
    """Load the given XP files into the database, one transaction each, their outcomes added to ``summary``."""
    from ingest.readers.products import product_of
    from ingest.readers.xp import read_xp
    n_files = n_files or len(found) + len(summary.files)
    chunk_rows = chunk_rows or (XP_CHUNK_ROWS if correlations else XP_CHUNK_ROWS_NO_CORRELATIONS)
    for f in found:
        if not f.named and is_other_product(f.path.name):      # another DataLink product: never read
            product = product_of(f.path.name)
            summary.files.append(FileResult(str(f.path), skipped=f"DataLink product {product}",
                                            other_products={product: 1}))
            continue

        def load(conn, result: FileResult, path=f.path) -> None:
            batches = read_xp(path, correlations=correlations, chunk_rows=chunk_rows, report=result)
            for batch in read_ahead(batches):
                result.rows_loaded += write_xp_batch(conn, batch, str(path))
                summary.pixels.update(touched_pixels(batch["source_id"]))
                _chunk_progress(progress, len(summary.files), n_files, path, result.rows_loaded)
        _load_file(engine, summary, f.path, n_files, progress, load, named=f.named)


# --- photometry ---------------------------------------------------------------------------------------------------
def _photometry_columns(chunk: dict[str, Any]) -> dict[str, Any]:
    cols = {k: np.asarray(v) for k, v in chunk.items() if k in PHOTOMETRY_COLUMNS + POSITION_COLUMNS}
    if "source_id" not in cols:
        raise KeyError("photometry: the source_id column is required")
    return cols


def ingest_photometry(engine: Engine, paths: Iterable[str | Path] | str | Path,
                      progress: Progress | None = None) -> IngestSummary:
    """Load Gaia photometry tables (source_id, phot_g_mean_flux, phot_*_mean_mag; ra, dec when present)."""
    return _ingest_files(engine, "photometry", paths, progress)


def load_photometry_files(engine: Engine, found: list[Found], summary: IngestSummary, progress: Progress = None,
                          n_files: int | None = None) -> None:
    """Load the given photometry tables, one transaction each, their outcomes added to ``summary``."""
    from ingest.readers.photometry import read_photometry
    n_files = n_files or len(found) + len(summary.files)
    for f in found:
        def load(conn, result: FileResult, path=f.path) -> None:
            for chunk in read_photometry(path, report=result):
                result.rows_loaded += write_photometry(conn, _photometry_columns(chunk))
                _chunk_progress(progress, len(summary.files), n_files, path, result.rows_loaded)
        _load_file(engine, summary, f.path, n_files, progress, load, named=f.named)


# --- sources read file by file (an ingest job fans these out, one shard per file or group of files) -------------
@dataclass(frozen=True)
class FileSource:
    """A source whose files load independently of each other: how its inputs expand, how its files load."""
    what: str                        # what its files are, in messages
    content: str                     # what a directory of passed-over files failed to hold
    tables: tuple[str, ...]          # analysed once its files are loaded
    load_files: Callable[..., None]  # (engine, found, summary, progress, n_files, **options)
    suffixes: Callable[[], tuple[str, ...]] = lambda: TABLE_SUFFIXES     # of the files walks and globs take


def _xp_suffixes() -> tuple[str, ...]:
    from ingest.readers.xp import XP_SUFFIXES  # imported when needed, as the readers are
    return XP_SUFFIXES


FILE_SOURCES: dict[str, FileSource] = {
    "gaia-xp": FileSource("Gaia XP files", "Gaia XP continuous spectra", ("xp_spectra", "xp_correlations"),
                          load_gaia_xp_files, _xp_suffixes),
    "photometry": FileSource("photometry tables", "photometry tables", ("photometry",), load_photometry_files),
}


def plan_files(source: str, paths: Iterable[str | Path] | str | Path) -> tuple[list[Found], IngestSummary]:
    """The files an ingest of ``source`` would load, and a summary holding the inputs that gave none."""
    kind = FILE_SOURCES[source]
    summary = IngestSummary(source)
    return expand_inputs(paths, summary, kind.what, kind.suffixes()), summary


def finish_files(engine: Engine, summary: IngestSummary, found: list[Found]) -> None:
    """After every file of an ingest has loaded: fail the directories and globs that gave nothing, then
    refresh the planner's statistics once (not per file: thousands of files would each pay for it)."""
    kind = FILE_SOURCES[summary.source]
    _fail_all_skipped(summary, found, kind.content)
    _analyze_if_loaded(engine, summary, kind.tables, summary.pixels or None)    # none noted: the whole tables


def finish_file_dicts(engine: Engine, source: str, parts: list[dict[str, Any]], found: list[Found]) -> dict[str, Any]:
    """`finish_files` for an ingest whose files loaded in parts (shards, each summarised by to_dict plus the
    ``pixels`` it wrote): the merged summary, with the directories and globs that gave nothing failed."""
    out = merge_summary_dicts(source, parts)
    seen = IngestSummary(source, [FileResult(f["path"], error=f["error"], skipped=f["skipped"]) for f in out["files"]])
    n_before = len(seen.files)
    _fail_all_skipped(seen, found, FILE_SOURCES[source].content)
    for r in seen.files[n_before:]:
        out["files_failed"] += 1
        out["failed_files"].append(r.error)
        out["files"].append(r.to_dict())
    if out["rows_loaded"]:
        pixels = {int(x) for p in parts for x in p.get("pixels") or []}
        analyze(engine, FILE_SOURCES[source].tables, pixels or None)
    return out


def _ingest_files(engine: Engine, source: str, paths: Iterable[str | Path] | str | Path, progress: Progress,
                  **options: Any) -> IngestSummary:
    found, summary = plan_files(source, paths)
    FILE_SOURCES[source].load_files(engine, found, summary, progress, len(found) + len(summary.files), **options)
    finish_files(engine, summary, found)
    return summary


# --- APOGEE -------------------------------------------------------------------------------------------------------
def ingest_apogee(engine: Engine, path: str | Path, progress: Progress | None = None) -> IngestSummary:
    """Load an APOGEE allStar file (or a subset with the same columns); computes the cross-match primary and
    the quality flags for every Gaia source it touches."""
    from ingest.readers.apogee import read_apogee
    summary = IngestSummary("apogee")
    found = expand_inputs(path, summary, "APOGEE label tables")
    n_files = len(found) + len(summary.files)
    for f in found:
        def load(conn, result: FileResult, p=f.path) -> None:
            seen: dict[int, int] = {}     # hash of (APOGEE_ID, TELESCOPE, FIELD) -> first data row
            offset = 0
            for labels in read_apogee(p, report=result):
                n_rows = len(labels["apogee_id"])
                labels = _drop_repeated_stars(labels, seen, offset, str(p), result)
                offset += n_rows
                result.rows_loaded += write_apogee(conn, labels, str(p))
                _chunk_progress(progress, len(summary.files), n_files, p, result.rows_loaded)
        _load_file(engine, summary, f.path, n_files, progress, load, named=f.named)
    _fail_all_skipped(summary, found, "APOGEE label tables")
    _analyze_if_loaded(engine, summary, ("apogee_labels",))
    return summary


def _drop_repeated_stars(labels: dict[str, Any], seen: dict[int, int], offset: int, path: str,
                         report: ReadReport) -> dict[str, Any]:
    """allStar rows are unique on (APOGEE_ID, TELESCOPE, FIELD), the table's key. A repeat would silently
    overwrite the first row in an upsert: report it as a duplicate and keep the first."""
    keys = zip(labels["apogee_id"], labels["telescope"], labels["field"])
    keep = np.ones(len(labels["apogee_id"]), bool)
    for i, key in enumerate(keys):
        h = hash(tuple(str(k).strip() for k in key))
        if h in seen:
            keep[i] = False
            report.duplicates.append(BadRow(path, offset + i + 1, "APOGEE_ID", f"repeats data row {seen[h]} (same "
                                            "APOGEE_ID, TELESCOPE, FIELD): not loaded, the first row is kept"))
        else:
            seen[h] = offset + i + 1
    return labels if keep.all() else {k: (np.asarray(v)[keep] if np.ndim(v) else v) for k, v in labels.items()}


# --- the published catalogue --------------------------------------------------------------------------------------
def catalogue_labels(labels: dict[str, Any], source_id: np.ndarray) -> dict[str, Any]:
    """Catalogue label rows keyed for apogee_labels: the catalogue has one row per Gaia source and may carry
    no APOGEE_ID, so rows without one get ``xp_apogee_cat:<source_id>`` (unique, stable across re-loads)."""
    out = dict(labels)
    n = len(source_id)
    gaia = np.asarray(out.get("gaia_source_id", source_id), dtype=np.int64)
    out["gaia_source_id"] = gaia
    ids = out.get("apogee_id")
    ids = [""] * n if ids is None else [("" if v is None else str(v).strip()) for v in np.asarray(ids, object)]
    out["apogee_id"] = [v or f"{CATALOGUE_ID_PREFIX}{g}" for v, g in zip(ids, gaia.tolist())]
    return out


def store_norm(norm: str | Path, target_dir: Path) -> Path:
    """Validate a normalisation .npz (mu, sig: 110 finite values each, sig > 0) and keep a copy in
    ``target_dir`` ($XPVAE_HOME/norms), named by content hash so re-importing the same file reuses it."""
    norm = Path(norm)
    from ingest.readers.catalogue import read_norm_npz
    mu, sig = read_norm_npz(norm)
    mu, sig = np.asarray(mu, np.float64).ravel(), np.asarray(sig, np.float64).ravel()
    if mu.shape != (110,) or sig.shape != (110,):
        raise ValueError(f"{norm}: mu and sig must have 110 values each, got {mu.shape} and {sig.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sig)) and np.all(sig > 0)):
        raise ValueError(f"{norm}: mu/sig must be finite and sig > 0")
    digest = hashlib.sha256(norm.read_bytes()).hexdigest()[:12]
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{norm.stem}-{digest}.npz"
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(norm, tmp)
        os.replace(tmp, target)
    return target


def ingest_catalogue(engine: Engine, path: str | Path, norm: str | Path | None = None,
                     progress: Progress | None = None, *, norms_dir: Path | None = None) -> IngestSummary:
    """Load the published XP×APOGEE catalogue: spectra (no correlations), G flux into photometry, labels.
    With ``norm`` the release's apogee_norm.npz is stored in ``norms_dir`` (Settings.home / "norms", required
    with ``norm``) and its path returned as ``norm_path``."""
    from ingest.readers.catalogue import read_catalogue
    summary = IngestSummary("catalogue")
    if norm is not None:
        try:
            if norms_dir is None:
                raise ValueError("no folder to keep the normalisation in (norms_dir)")
            summary.norm_path = str(store_norm(norm, norms_dir))
        except Exception as exc:
            message = str(exc)
            summary.files.append(FileResult(str(norm), error=message if str(norm) in message
                                            else f"{norm}: {message}"))
    files = expand_paths(path, summary, "catalogue files", (".h5", ".hdf5"))
    n_files = len(files) + len(summary.files)
    pixels: set[int] = set()
    for p in files:
        def load(conn, result: FileResult, p=p) -> None:
            for batch, labels, phot in read_catalogue(p, report=result):
                batch = batch if isinstance(batch, XPBatch) else XPBatch(batch)
                result.rows_loaded += write_xp_batch(conn, batch, str(p))
                pixels.update(touched_pixels(batch["source_id"]))
                if phot:
                    write_photometry(conn, _photometry_columns(phot))
                if labels:
                    write_apogee(conn, catalogue_labels(labels, batch["source_id"]), str(p))
                _chunk_progress(progress, len(summary.files), n_files, p, result.rows_loaded)
        _load_file(engine, summary, p, n_files, progress, load)
    _analyze_if_loaded(engine, summary, ("xp_spectra", "photometry", "apogee_labels"), pixels)
    return summary
