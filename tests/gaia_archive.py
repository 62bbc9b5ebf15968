"""A Gaia archive on 127.0.0.1 for tests: TAP asynchronous jobs (ADQL on gaiadr3.gaia_source) and DataLink,
answering the requests astroquery's TAP+ client makes the way the archive does (paths, 303 redirects, job
phases, result formats, zips named as DataLink names its members). Never patch the client: point it here.

Only the ADQL the project sends is understood: ``SELECT <columns> FROM gaiadr3.gaia_source WHERE source_id IN
(…)`` and ``… WHERE <column> < <number>`` / ``>``; anything else is answered 400, as a rejected query.
``faults[path] = [500, 503]`` answers the next requests to a path with those statuses first.
"""
from __future__ import annotations

import gzip
import io
import itertools
import re
import tempfile
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from shared.xp import XPBatch
from simulator.writers import write_datalink

TAP = "/tap-server/tap"
DATA = "/data-server/data"
MAX_IDS = 5000
FORMATS = {"votable": "votable", "votable_plain": "votable", "votable_gzip": "votable", "csv": "csv",
           "ecsv": "ecsv", "fits": "fits"}
ALL_PRODUCTS = ("XP_CONTINUOUS", "XP_SAMPLED", "MCMC_GSPPHOT", "MCMC_MSC", "EPOCH_PHOTOMETRY", "RVS")


class GaiaArchive:
    """``with GaiaArchive(batch, photometry) as archive:`` serves at ``archive.url`` until the block ends."""

    def __init__(self, batch: XPBatch, photometry: dict[str, np.ndarray]):
        self.batch = batch
        self.gaia_source = {k: np.asarray(v) for k, v in photometry.items()}
        self.gaia_source.setdefault("ra", np.linspace(0, 359, len(photometry["source_id"])))
        self.gaia_source.setdefault("dec", np.linspace(-89, 89, len(photometry["source_id"])))
        self.faults: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str, dict]] = []      # (method, path, form fields)
        self.jobs: dict[str, tuple[str, str]] = {}            # job id -> (query, format)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="gaia-archive-")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> "GaiaArchive":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._tmp.cleanup()

    def count(self, path: str) -> int:
        return sum(p == path for _, p, _ in self.requests)

    # --- answers ------------------------------------------------------------------------------------------
    def datalink(self, form: dict) -> tuple[int, str, bytes]:
        ids = [int(i) for i in form.get("ID", "").split(",") if i.strip()]
        if not ids or len(ids) > MAX_IDS:
            return 400, "text/plain", f"ID: between 1 and {MAX_IDS} identifiers, got {len(ids)}".encode()
        kind = form.get("RETRIEVAL_TYPE", "ALL").upper()
        products = ALL_PRODUCTS if kind == "ALL" else tuple(p.strip() for p in kind.split(","))
        fmt = FORMATS.get(form.get("FORMAT", "votable").lower())
        if fmt is None or any(p not in ALL_PRODUCTS for p in products):
            return 400, "text/plain", b"unknown FORMAT or RETRIEVAL_TYPE"
        rows = np.flatnonzero(np.isin(self.batch["source_id"], ids))
        with self._lock:
            target = Path(self._tmp.name) / f"datalink-{next(self._ids)}.zip"
        if len(rows):
            write_datalink(self.batch.take(rows), target, fmt, form.get("DATA_STRUCTURE", "INDIVIDUAL"), products)
        else:
            import zipfile
            zipfile.ZipFile(target, "w").close()       # the archive answers an empty zip
        return 200, "application/zip", target.read_bytes()

    def submit(self, form: dict) -> tuple:
        """An async TAP job: 303 to its URL, or 400 when the query or format is not understood."""
        query, fmt = form.get("QUERY", ""), form.get("FORMAT", "votable").lower()
        if fmt not in FORMATS or self.run_query(query) is None:
            return 400, "text/plain", b"Cannot parse query"
        with self._lock:
            job = f"{next(self._ids):014d}"
            self.jobs[job] = (query, fmt)
        return 303, "text/plain", b"", [("Location", f"{self.url.rstrip('/')}{TAP}/async/{job}")]

    def job_answer(self, path: str) -> tuple:
        """A job's phase (always COMPLETED) or its result; 404 for any other path."""
        m = re.fullmatch(rf"{TAP}/async/(\d+)/(phase|results/result)", path)
        if m is None or m.group(1) not in self.jobs:
            return (404,)
        if m.group(2) == "phase":
            return 200, "text/plain", b"COMPLETED"
        query, fmt = self.jobs[m.group(1)]
        return 200, "application/octet-stream", self.result_bytes(self.run_query(query), fmt)

    def run_query(self, query: str) -> dict[str, np.ndarray] | None:
        m = re.fullmatch(r"\s*SELECT\s+(?P<cols>.+?)\s+FROM\s+gaiadr3\.gaia_source\s+WHERE\s+(?P<where>.+?)\s*",
                         query, re.I | re.S)
        if m is None:
            return None
        cols = [c.strip().lower() for c in m.group("cols").split(",")]
        if any(c not in self.gaia_source for c in cols):
            return None
        src = self.gaia_source
        where = m.group("where")
        inlist = re.fullmatch(r"source_id\s+IN\s*\(([\d,\s]+)\)", where, re.I)
        cmp = re.fullmatch(r"(\w+)\s*([<>])\s*([-+\d.eE]+)", where)
        if inlist:
            keep = np.isin(src["source_id"], [int(x) for x in inlist.group(1).split(",")])
        elif cmp and cmp.group(1).lower() in src:
            v = src[cmp.group(1).lower()]
            keep = v < float(cmp.group(3)) if cmp.group(2) == "<" else v > float(cmp.group(3))
        else:
            return None
        return {c: src[c][keep] for c in cols}

    def result_bytes(self, columns: dict[str, np.ndarray], fmt: str) -> bytes:
        from astropy.table import Table
        t = Table({k: v for k, v in columns.items()})
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if FORMATS[fmt] in ("csv", "ecsv"):
                text = io.StringIO()
                t.write(text, format=f"ascii.{FORMATS[fmt]}")
                buf.write(text.getvalue().encode())
            else:
                t.write(buf, format=FORMATS[fmt])
        data = buf.getvalue()
        return gzip.compress(data) if fmt == "votable_gzip" else data

    # --- HTTP ---------------------------------------------------------------------------------------------
    def _handler(self):
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):      # quiet
                pass

            def _send(self, status: int, ctype: str = "text/plain", body: bytes = b"", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _fault(self) -> bool:
                queue = archive.faults.get(self.path)
                if queue:
                    status = queue.pop(0)
                    self._send(status, "text/html", f"<html><body>Error {status}</body></html>".encode())
                    return True
                return False

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(n).decode()).items()}
                archive.requests.append(("POST", self.path, form))
                if self._fault():
                    return
                if self.path == DATA:
                    self._send(*archive.datalink(form))
                elif self.path == f"{TAP}/async":
                    self._send(*archive.submit(form))
                else:
                    self._send(404)

            def do_GET(self):
                archive.requests.append(("GET", self.path, {}))
                if not self._fault():
                    self._send(*archive.job_answer(self.path))

        return Handler
