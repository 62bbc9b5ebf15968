"""Fetching from the Gaia archive: XP continuous spectra through DataLink, photometry through TAP (ADQL).

Both go through astroquery's TAP+ client (installed with GaiaXPy). The archive takes at most 5,000 sources
per DataLink request, so a source list is cut into batches of the sorted, unique ids; each batch is one file
in the output folder, named after its position and a hash of its ids and format, and written atomically
(``.part`` then rename). A rerun with the same ids therefore finds the finished batches on disk and skips them: an
interrupted fetch resumes where it stopped. HTTP errors that may pass (5xx, 429, a dropped connection) are
retried with exponential backoff; the others (a rejected query) fail at once.

``url`` is the archive's base URL (default ``https://gea.esac.esa.int/``, setting XPVAE_GAIA_TAP_URL): its
TAP service answers at ``<url>tap-server/tap`` and DataLink at ``<url>data-server/data``, as on the archive.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from shared.progress import Progress

DATALINK_MAX_IDS = 5000        # the archive's limit per DataLink request
DATA_STRUCTURE = "RAW"         # one XP_CONTINUOUS_RAW.<ext> per batch, arrays as the archive stores them
FORMATS = {"csv": "csv", "ecsv": "ecsv", "fits": "fits", "votable": "xml"}     # --format -> file extension
PHOTOMETRY_QUERY = ("SELECT source_id, phot_g_mean_flux, phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag, "
                    "ra, dec FROM gaiadr3.gaia_source WHERE source_id IN ({ids})")
COMPRESSED = ("votable_gzip",)   # result formats the archive gzips (as astroquery's GaiaClass declares)
TRANSIENT_STATUS = re.compile(r"\b(5\d\d|429)\b|Internal Server Error|Service Unavailable|Bad Gateway|"
                              r"Gateway Time-?out|Too Many Requests")


class FetchError(Exception):
    """A fetch that cannot go on; ``transient`` when the archive kept failing (unreachable, 5xx) rather than
    refusing the request."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class FetchResult:
    """What a fetch did: the batch files (all on disk at the end) and how many were fetched now."""
    out_dir: Path
    n_ids: int
    files: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)   # batches for which the archive had no data
    fetched: int = 0
    skipped: int = 0       # already on disk from an earlier run
    retries: int = 0

    @property
    def with_data(self) -> list[Path]:
        return [f for f in self.files if f not in self.empty]


# --- source ids ---------------------------------------------------------------------------------------------------
def unique_ids(ids: Iterable[int]) -> np.ndarray:
    """Sorted unique positive source ids (a rerun with the same ids in any order makes the same batches)."""
    arr = np.unique(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
    if arr.size and arr[0] <= 0:
        raise ValueError(f"source ids must be positive, found {int(arr[0])}")
    return arr


def read_id_file(path: str | Path) -> np.ndarray:
    """Source ids from a text file (ids separated by newlines, commas or spaces; ``#`` starts a comment) or
    from any table the readers understand with a source_id column (CSV/ECSV/FITS/VOTable)."""
    path = Path(path)
    from ingest.readers.sniff import sniff
    sniffed = sniff(path)
    if sniffed.kind == "csv" and not sniffed.gzipped:
        ids = _plain_ids(path)
        if ids is not None:
            return unique_ids(ids)
    from ingest.readers.photometry import ALIASES
    from ingest.readers.tables import iter_table_chunks
    from shared.xp import ReadReport
    names = ALIASES["source_id"]
    report = ReadReport(str(path))
    out: list[np.ndarray] = []
    for chunk, present in iter_table_chunks(path, {n: "int" for n in names}, 100_000, report):
        name = next((n for n in names if n in present), None)
        if name is None:
            raise ValueError(f"{path}: no source_id column (looked for {', '.join(names)})")
        out.append(chunk[name])
    if report.bad_rows:
        raise ValueError(f"{report.bad_rows[0]} (and {len(report.bad_rows) - 1} more bad rows)")
    return unique_ids(np.concatenate(out) if out else np.zeros(0, np.int64))


def _plain_ids(path: Path) -> list[int] | None:
    """The ids of a plain list, or None when the file is not one (e.g. a CSV with a header)."""
    ids: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            tokens = [t for t in re.split(r"[,\s]+", line.split("#", 1)[0]) if t]
            for t in tokens:
                if not t.isdigit():
                    if not ids and n == 1:
                        return None          # a header line: let the table reader try
                    raise ValueError(f"{path}: line {n}: {t[:40]!r} is not a source id")
                ids.append(int(t))
    return ids


def apogee_ids(path: str | Path) -> np.ndarray:
    """The Gaia source ids of an APOGEE allStar (or subset) file; unmatched rows (id 0) are left out."""
    from ingest.readers.apogee import read_apogee
    ids = [chunk["gaia_source_id"] for chunk in read_apogee(path)]
    arr = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return unique_ids(arr[arr > 0])


def batches(ids: np.ndarray, size: int = DATALINK_MAX_IDS) -> list[np.ndarray]:
    if not 1 <= size <= DATALINK_MAX_IDS:
        raise ValueError(f"batch size must be 1 to {DATALINK_MAX_IDS}, not {size}")
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def batch_name(prefix: str, k: int, ids: np.ndarray, ext: str, fmt: str) -> str:
    """``<prefix>_b<k>_<hash of the ids and format>.<ext>``: the same request gives the same name, another
    (other ids, another format) another name."""
    digest = hashlib.sha256(fmt.encode() + np.ascontiguousarray(ids, "<i8").tobytes()).hexdigest()[:10]
    return f"{prefix}_b{k:05d}_{digest}.{ext}"


# --- the archive --------------------------------------------------------------------------------------------------
class Archive:
    """astroquery clients for one Gaia-archive-like server: TAP (ADQL jobs) and the data service (DataLink)."""

    def __init__(self, url: str, retries: int = 4, backoff_s: float = 2.0):
        # astroquery's TAP+ client with the contexts of its GaiaClass. Not GaiaClass itself: importing
        # astroquery.gaia contacts the real archive at once, and its load_data unpacks the zip into the working
        # directory, where we want the zip kept as the archive sent it.
        from astroquery.utils.tap.core import TapPlus
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise ValueError(f"archive URL must start with http:// or https://, not {url!r}")
        self.url = url if url.endswith("/") else url + "/"
        self.retries, self.backoff_s = retries, backoff_s
        self.retried = 0
        contexts = dict(tap_context="tap", upload_context="Upload", table_edit_context="TableTool",
                        data_context="data", datalink_context="datalink", use_names_over_ids=True)
        self.tap = TapPlus(url=self.url, server_context="tap-server", **contexts)
        self.data = TapPlus(url=self.url, server_context="data-server", **contexts)

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        """``fn()`` with retries on transient failures (waits backoff, 2·backoff, … capped at 60 s)."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as exc:    # astroquery raises requests' HTTPError, SystemError, OSError, …
                transient = _is_transient(exc)
                if not transient or attempt == self.retries:
                    text = " ".join(str(exc).split())[:300] or type(exc).__name__
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise FetchError(f"{what}: {text}{tries}", transient=transient) from exc
                self.retried += 1
                time.sleep(min(self.backoff_s * 2 ** attempt, 60.0))
        raise AssertionError("unreachable")

    def query_ids(self, adql: str) -> np.ndarray:
        """Run an ADQL query (an asynchronous job, no row limit) and return its source_id column."""
        table = self._call("ADQL query", lambda: self.tap.launch_job_async(
            adql, output_format="votable", format_with_results_compressed=COMPRESSED).get_results())
        names = {n.lower(): n for n in table.colnames}
        if "source_id" not in names:
            raise FetchError(f"ADQL query: the result has no source_id column (columns: {', '.join(table.colnames)})")
        col = table[names["source_id"]]
        return unique_ids(np.ma.filled(col, 0)[~np.ma.getmaskarray(col)] if np.ma.isMaskedArray(col) else col)

    def save_query(self, adql: str, fmt: str, target: Path) -> None:
        """Run an ADQL query and save its result in ``fmt`` (csv, ecsv, fits, votable) at ``target``."""
        self._call("ADQL query", lambda: self.tap.launch_job_async(
            adql, output_format=fmt, dump_to_file=True, output_file=str(target),
            format_with_results_compressed=COMPRESSED))

    def save_datalink(self, ids: np.ndarray, fmt: str, target: Path, retrieval_type: str = "XP_CONTINUOUS") -> None:
        """One DataLink request for ``ids`` (at most 5,000), the archive's zip saved at ``target``."""
        params = {"VALID_DATA": "false", "ID": ",".join(str(int(i)) for i in ids), "RELEASE": "Gaia DR3",
                  "DATA_STRUCTURE": DATA_STRUCTURE, "FORMAT": fmt, "RETRIEVAL_TYPE": retrieval_type,
                  "USE_ZIP_ALWAYS": "true"}
        self._call("DataLink request", lambda: self.data.load_data(params_dict=params, output_file=str(target)))


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: HTTP 5xx/429 and connections that failed or dropped; not a rejected request."""
    from requests.exceptions import HTTPError
    if isinstance(exc, HTTPError):        # astroquery's message says the status ("Error 500: …") or its reason
        return bool(TRANSIENT_STATUS.search(str(exc)))
    if isinstance(exc, (ConnectionError, TimeoutError, http.client.HTTPException)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)):
        return True               # socket errors, requests' ConnectionError
    return False


# --- fetching in batches ------------------------------------------------------------------------------------------
def _run_batches(archive: Archive, ids: np.ndarray, out_dir: Path, prefix: str, ext: str, fmt: str,
                 fetch_one: Callable[[np.ndarray, Path], None], progress: Progress | None,
                 is_empty: Callable[[Path], bool] = lambda path: False) -> FetchResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = unique_ids(ids)           # any order, repeats allowed: the batches depend on the set of ids only
    parts = batches(ids)
    result = FetchResult(out_dir, len(ids))
    retried_before = archive.retried
    for k, chunk in enumerate(parts):
        target = out_dir / batch_name(prefix, k, chunk, ext, fmt)
        result.files.append(target)
        if target.exists():
            result.skipped += 1
            if is_empty(target):
                result.empty.append(target)
            _say(progress, k + 1, len(parts), f"batch {k + 1}/{len(parts)}: {target.name} already on disk")
            continue
        partial = target.with_name(target.name + ".part")
        start = time.perf_counter()
        try:
            fetch_one(chunk, partial)
            none = is_empty(partial)       # also checks the answer is what was asked for, before it counts as done
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        result.fetched += 1
        size = target.stat().st_size / 1e6
        if none:
            result.empty.append(target)
        _say(progress, k + 1, len(parts), f"batch {k + 1}/{len(parts)}: {len(chunk)} sources -> {target.name} "
                                          f"({size:.1f} MB, {time.perf_counter() - start:.1f} s)"
                                          + ("; the archive has no data for any of them" if none else ""))
    result.retries = archive.retried - retried_before
    return result


def _say(progress: Progress | None, done: int, total: int, message: str) -> None:
    if progress:
        progress(done, total, message)


def fetch_xp(archive: Archive, ids: np.ndarray, out_dir: str | Path, fmt: str = "csv",
             progress: Progress | None = None) -> FetchResult:
    """XP continuous spectra of ``ids`` through DataLink: one zip per batch of at most 5,000 sources."""
    _check_format(fmt)
    return _run_batches(archive, ids, Path(out_dir), "XP_CONTINUOUS", "zip", fmt,
                        lambda chunk, target: archive.save_datalink(chunk, fmt, target), progress, _empty_zip)


def _empty_zip(path: Path) -> bool:
    """A DataLink zip without members: none of the batch's sources has XP spectra (kept as the batch's marker)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as zf:
            return not zf.namelist()
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{path.name}: the archive's answer is not a zip ({exc})") from exc


def fetch_photometry(archive: Archive, ids: np.ndarray, out_dir: str | Path, fmt: str = "csv",
                     progress: Progress | None = None) -> FetchResult:
    """source_id, G flux, G/BP/RP magnitudes, ra and dec of ``ids`` from gaiadr3.gaia_source, one table
    per batch of at most 5,000 sources."""
    _check_format(fmt)

    def one(chunk: np.ndarray, target: Path) -> None:
        archive.save_query(PHOTOMETRY_QUERY.format(ids=", ".join(str(int(i)) for i in chunk)), fmt, target)
    return _run_batches(archive, ids, Path(out_dir), "photometry", FORMATS[fmt], fmt, one, progress)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def resolve_ids(source_ids: str | Path | None = None, adql: str | None = None, apogee: str | Path | None = None,
                archive: Archive | None = None) -> np.ndarray:
    """The source list from exactly one of: an id file, an ADQL query (run on the archive), an APOGEE file."""
    given = [x for x in (source_ids, adql, apogee) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --source-ids, --adql, --from-apogee")
    if source_ids is not None:
        ids = read_id_file(source_ids)
    elif apogee is not None:
        ids = apogee_ids(apogee)
    else:
        ids = archive.query_ids(adql)
    if not len(ids):
        raise ValueError("the source list is empty")
    return ids


def describe(result: FetchResult, what: str) -> str:
    return (f"fetched {what} for {result.n_ids} sources into {result.out_dir}: {len(result.files)} batch file(s), "
            f"{result.fetched} downloaded now, {result.skipped} already on disk"
            + (f", {result.retries} request(s) retried" if result.retries else ""))
