"""Files whose data lives outside themselves are refused before anything is fetched (issue 12, safe by default).

astropy follows a VOTable STREAM's ``href`` (file://, http://) and h5py follows HDF5 external/soft links, external
raw storage and virtual datasets: a hostile file given to ``ingest`` could load any local file or contact a host.
Each hostile file here points at *valid* data (a local file, or a server on 127.0.0.1 that serves it and records
every request), so without the refusal it would load; the tests require one clear line naming the file and what
was refused, no rows, and no request to the server. Inline data (the vendored archive VOTables) still loads.
"""
from __future__ import annotations

import base64
import gzip
import http.server
import re
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ingest.readers import ReaderError, read_catalogue, read_photometry, read_xp
from shared.xp import ReadReport, XPBatch

XP_DIR = "data/gaia_xp/gaiaxpy_tests"
REFUSED = r"refused, only data inside the file is read"
_STREAM = re.compile(rb"<STREAM[^>]*>(.*?)</STREAM>", re.S)


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self):      # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)
        body = self.server.payload
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ``server.payload`` to any path; ``server.hits`` lists requests."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    srv.hits, srv.payload = [], b""
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/data"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _external(doc: bytes, url: str, how: str) -> bytes:
    """``doc`` (a VOTable with one inline base64 STREAM) made to take its data from ``url``, in one of the
    ways astropy follows: a plain href, a namespace-prefixed STREAM, a STREAM hidden in an XML entity, an href
    supplied as the DTD's default attribute, or the FITS serialisation."""
    m = _STREAM.search(doc)
    head, tail = doc[:m.start()], doc[m.end():]
    u = url.encode()
    if how == "href":
        return head + b'<STREAM href="' + u + b'"/>' + tail
    if how == "prefixed":
        return head + b'<v:STREAM xmlns:v="http://www.ivoa.net/xml/VOTable/v1.3" href="' + u + b'"/>' + tail
    decl_end = doc.index(b"?>") + 2
    if how == "entity":
        dtd = b"<!DOCTYPE VOTABLE [<!ENTITY s '<STREAM href=\"" + u + b"\"/>'>]>"
        return doc[:decl_end] + dtd + head[decl_end:] + b"&s;" + tail
    if how == "default_attribute":
        dtd = b'<!DOCTYPE VOTABLE [<!ATTLIST STREAM href CDATA "' + u + b'">]>'
        return doc[:decl_end] + dtd + head[decl_end:] + b"<STREAM/>" + tail
    if how == "fits":
        start, end = doc.index(b"<BINARY"), doc.index(b"</DATA>")
        return doc[:start] + b'<FITS extnum="1"><STREAM href="' + u + b'"/></FITS>' + doc[end:]
    raise ValueError(how)


def _payload(doc: bytes) -> bytes:
    return base64.b64decode(_STREAM.search(doc).group(1))


def _read_nothing(reader, path: Path, match: str) -> ReadReport:
    """Run ``reader`` to the end: it must raise ReaderError matching ``match`` before yielding anything."""
    rep = ReadReport(str(path))
    got = []
    with pytest.raises(ReaderError, match=match) as info:
        for part in reader(path, report=rep):
            got.append(part)
    assert got == [] and rep.rows_read == 0 and rep.rows_ok == 0
    assert "\n" not in str(info.value)
    return rep


@pytest.fixture(scope="module")
def archive_xml(shared_dir) -> bytes:
    return (shared_dir / XP_DIR / "XP_CONTINUOUS_RAW.xml").read_bytes()     # BINARY2, as the archive sends it


# --- VOTable: file:// -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["href", "prefixed", "entity", "default_attribute"])
def test_votable_stream_pointing_at_a_local_file_is_refused(archive_xml, tmp_path, how):
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(_payload(archive_xml))        # the very rows the archive file holds inline
    path = tmp_path / f"hostile_{how}.xml"
    path.write_bytes(_external(archive_xml, target.as_uri(), how))
    what = "the XML entity 's'" if how == "entity" else re.escape(f"href='{target.as_uri()}'")
    _read_nothing(read_xp, path, rf"^{re.escape(str(path))}: line \d+: .*{what}.*{REFUSED}")


def test_gzipped_and_zipped_hostile_votables_are_refused(archive_xml, tmp_path):
    """The same hostile file gzipped, or as a member of a DataLink zip (extracted before it is parsed)."""
    target = _write(tmp_path / "elsewhere.bin", _payload(archive_xml))
    hostile = _external(archive_xml, target.as_uri(), "href")
    gz = _write(tmp_path / "hostile.xml.gz", gzip.compress(hostile))
    zipped = tmp_path / "hostile.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("XP_CONTINUOUS_COMBINED.xml", hostile)
    for path, label in ((gz, gz), (zipped, f"{zipped}::XP_CONTINUOUS_COMBINED.xml")):
        _read_nothing(read_xp, path, rf"^{re.escape(str(label))}: line \d+: .*{REFUSED}")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- VOTable: http:// -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["href", "entity", "default_attribute", "fits"])
def test_votable_stream_pointing_at_a_server_is_refused_without_contacting_it(archive_xml, shared_dir, tmp_path,
                                                                             server, how):
    server.payload = ((shared_dir / XP_DIR / "XP_CONTINUOUS_RAW.fits").read_bytes() if how == "fits"
                      else _payload(archive_xml))
    path = _write(tmp_path / f"hostile_{how}.xml", _external(archive_xml, server.url, how))
    expected = {"fits": r"<FITS>: FITS serialisation", "entity": "the XML entity 's'"}.get(
        how, re.escape(f"href='{server.url}'"))
    _read_nothing(read_xp, path, rf"^{re.escape(str(path))}: line \d+: .*{expected}.*{REFUSED}")
    assert server.hits == []


def _photometry_votable(tmp_path: Path, serialisation: str = "binary2") -> bytes:
    from astropy.table import Table
    t = Table({"source_id": np.array([11, 12, 13], np.int64), "phot_g_mean_flux": [1.0e5, 2.0e5, 3.0e5],
               "phot_bp_mean_mag": [15.0, 15.5, 16.0], "phot_rp_mean_mag": [14.0, 14.5, 15.0]})
    out = tmp_path / f"phot_inline_{serialisation}.xml"
    t.write(out, format="votable", tabledata_format=serialisation)
    return out.read_bytes()


def test_photometry_votable_pointing_at_a_server_fails_the_ingest(sqlite_url, tmp_path, server, monkeypatch):
    """``xpvae ingest photometry`` on a hostile file: exit 1, one FAILED line saying what was refused, no rows
    in the database, no request to the server; the same file with its data inline loads."""
    from db.engine import get_engine
    from xpvae.cli import main
    inline = _photometry_votable(tmp_path)
    server.payload = _payload(inline)
    path = _write(tmp_path / "phot.xml", _external(inline, server.url, "href"))
    _read_nothing(read_photometry, path, REFUSED)
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    from testdb import _empty_tables  # the session's database: earlier tests may have left photometry rows
    _empty_tables(get_engine(sqlite_url))
    bad = CliRunner().invoke(main, ["ingest", "photometry", str(path)])
    assert bad.exit_code == 1, bad.output
    failed = [line for line in bad.output.splitlines() if line.startswith(f"FAILED {path}")]
    assert len(failed) == 1 and f"href='{server.url}'" in failed[0] and "refused" in failed[0], bad.output
    with get_engine(sqlite_url).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM photometry")).scalar_one() == 0
    ok = CliRunner().invoke(main, ["ingest", "photometry", str(_write(tmp_path / "ok.xml", inline))])
    assert ok.exit_code == 0, ok.output
    with get_engine(sqlite_url).connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM photometry")).scalar_one() == 3
    assert server.hits == []


def test_binary_votable_pointing_at_a_local_file_is_refused(tmp_path):
    """BINARY (the archive sends BINARY2) goes through the same door."""
    inline = _photometry_votable(tmp_path, "binary")
    assert b"<BINARY>" in inline
    target = _write(tmp_path / "elsewhere.bin", _payload(inline))
    path = _write(tmp_path / "phot.xml", _external(inline, target.as_uri(), "href"))
    _read_nothing(read_photometry, path, rf"^{re.escape(str(path))}: line \d+: .*{REFUSED}")
    ok = list(read_photometry(_write(tmp_path / "ok.xml", inline)))
    assert ok[0]["source_id"].tolist() == [11, 12, 13]


def test_vendored_archive_votables_still_load(shared_dir):
    """TABLEDATA and BINARY2 with inline base64 data: the same values as the FITS file of the same sources."""
    d = shared_dir / XP_DIR
    for xml, fits in (("XP_CONTINUOUS_RAW.xml", "XP_CONTINUOUS_RAW.fits"),
                      ("XP_CONTINUOUS_RAW_plain.xml", "XP_CONTINUOUS_RAW.fits"),
                      ("XP_CONTINUOUS_RAW_with_missing_BP.xml", "XP_CONTINUOUS_RAW_with_missing_BP.fits")):
        got, want = XPBatch.concat(list(read_xp(d / xml))), XPBatch.concat(list(read_xp(d / fits)))
        assert got["source_id"].tolist() == want["source_id"].tolist() and len(got) in (2, 3), xml
        assert np.array_equal(got.coefficients110(), want.coefficients110(), equal_nan=True), xml


# --- HDF5 (the published catalogue) -----------------------------------------------------------------------------
def _catalogue_table():
    from astropy.table import Table
    rng = np.random.default_rng(41)
    return Table({"ids": np.array([501, 502, 503], np.int64), "coeffs": rng.normal(size=(3, 110)),
                  "coeff_errs": np.abs(rng.normal(size=(3, 110))) + 0.01, "phot_g_mean_flux": np.full(3, 1.0e5)})


@pytest.mark.parametrize("how, what", [
    ("external_link", "is an external link"),
    ("soft_link", "is a soft link"),
    ("external_storage", "keeps its data in external files"),
    ("virtual", "is a virtual dataset mapped onto other files"),
])
def test_catalogue_whose_data_lives_elsewhere_is_refused(tmp_path, how, what):
    import h5py
    table = _catalogue_table()
    target = tmp_path / "elsewhere.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table.write(target, path="__astropy_table__", serialize_meta=True)
    assert sum(len(p[0]) for p in read_catalogue(target)) == 3          # what each hostile file points at
    rows = table.as_array()
    path = tmp_path / "xp_apogee_cat.h5"
    with h5py.File(path, "w") as f:
        if how == "external_link":
            f["__astropy_table__"] = h5py.ExternalLink(str(target), "/__astropy_table__")
        elif how == "soft_link":
            f["hidden/t"] = h5py.ExternalLink(str(target), "/__astropy_table__")
            f["__astropy_table__"] = h5py.SoftLink("/hidden/t")
        elif how == "external_storage":
            raw = _write(tmp_path / "rows.bin", rows.tobytes())
            f.create_dataset("__astropy_table__", shape=rows.shape, dtype=rows.dtype,
                             external=[(str(raw), 0, raw.stat().st_size)])
        else:
            layout = h5py.VirtualLayout(shape=rows.shape, dtype=rows.dtype)
            layout[:] = h5py.VirtualSource(str(target), "__astropy_table__", shape=rows.shape)
            f.create_virtual_dataset("__astropy_table__", layout)
    match = rf"^{re.escape(str(path))}: __astropy_table__ {what}.*{REFUSED}"
    _read_nothing(read_catalogue, path, match)
    _read_nothing(read_xp, path, match)
