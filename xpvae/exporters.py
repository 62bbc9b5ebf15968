"""Table writers that take an export's rows chunk by chunk (pyarrow RecordBatches from db.export), so a
catalogue of any size is written in bounded memory. NULL stays NULL in every format (how astropy reads it back
is said per format), and each writes the columns' units and descriptions, and their UCDs where the format has
a place for them.

- fits: a binary table whose row count is known up front (db.export counts first); rows are appended as
  big-endian records. NULL: NaN for floats, TNULLn for integers, 0 for logicals (the FITS null), an empty
  string for text (astropy masks all but the logical, which it reads as False unless opened with
  logical_as_bytes=True). Descriptions and UCDs in TCOMMn / TUCDn, the keys TOPCAT (STIL) writes and reads.
- votable: VOTable 1.4 with a BINARY2 stream (per-row null flags), base64 in chunks (astropy honours the
  flags except on text columns, which it reads as '').
- parquet: pyarrow ParquetWriter, one row group per chunk; NULL is Parquet's own null (pyarrow, pandas,
  DuckDB, TOPCAT read it as such); units, descriptions and UCDs in each field's metadata. astropy 8's own
  Parquet reader ignores Parquet nulls (it expects its private '<name>.mask' columns); read with
  ``Table.from_pandas(pandas.read_parquet(path, dtype_backend="numpy_nullable"))`` to get masked columns.
- csv: ECSV 1.0 — a CSV whose '#' header lines carry the types, units and descriptions; empty field = NULL.
  Tools that do not know ECSV read it as CSV when told to skip '#' lines (pandas: comment='#').
"""
from __future__ import annotations

import base64
import io
from typing import BinaryIO
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pyarrow as pa

from db.export import Column, ExportPlan

SUFFIXES = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".vot": "votable", ".votable": "votable",
            ".xml": "votable", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".ecsv": "csv"}
_NUMPY = {"bool": np.bool_, "int16": np.int16, "int32": np.int32, "int64": np.int64, "float32": np.float32,
          "float64": np.float64}


def _filled(arr: pa.Array, kind: str, fill) -> tuple[np.ndarray, np.ndarray]:
    """(values with NULLs replaced by ``fill``, null mask) as numpy."""
    null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    values = np.asarray(arr.fill_null(fill).to_numpy(zero_copy_only=False))
    return values.astype(_NUMPY[kind], copy=False) if kind in _NUMPY else values, null


def _astropy_table(columns: list[Column]):
    """An empty astropy Table with the export's names, types, units, descriptions and UCDs (for headers)."""
    from astropy.table import MaskedColumn, Table
    cols = [MaskedColumn(np.zeros(0, "U1" if c.kind == "str" else _NUMPY[c.kind]), name=c.name, unit=c.unit,
                         description=c.description or None, meta={"ucd": c.ucd} if c.ucd else None)
            for c in columns]
    return Table(cols)


class Writer:
    def __init__(self, fh: BinaryIO, plan: ExportPlan, meta: dict[str, str]):
        self.fh, self.plan, self.meta, self.rows = fh, plan, meta, 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        self._write(batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- FITS --------------------------------------------------------------------------------------------------------
_FITS = {"bool": ("L", "u1"), "int16": ("I", ">i2"), "int32": ("J", ">i4"), "int64": ("K", ">i8"),
         "float32": ("E", ">f4"), "float64": ("D", ">f8")}
_TNULL = {"int16": -(1 << 15), "int32": -(1 << 31), "int64": -(1 << 63)}


class FitsWriter(Writer):
    def __init__(self, fh, plan, meta):
        super().__init__(fh, plan, meta)
        from astropy.io import fits
        self.widths = {c.name: max(1, plan.text_bytes.get(c.name, 1)) for c in plan.columns if c.kind == "str"}
        defs, fields = [], []
        for c in plan.columns:
            if c.kind == "str":
                fmt, dt = f"{self.widths[c.name]}A", f"S{self.widths[c.name]}"
            else:
                fmt, dt = _FITS[c.kind]
            defs.append(fits.Column(name=c.name, format=fmt, unit=c.unit, null=_TNULL.get(c.kind)))
            fields.append((c.name, dt))
        self.dtype = np.dtype(fields)
        hdu = fits.BinTableHDU.from_columns(defs, nrows=0)
        hdr = hdu.header
        hdr["NAXIS2"] = plan.n_rows
        for i, c in enumerate(plan.columns, 1):
            if c.description:
                hdr[f"TCOMM{i}"] = c.description
            if c.ucd:
                hdr[f"TUCD{i}"] = c.ucd
        hdr["EXTNAME"] = meta.get("export", "EXPORT")
        for key, value in meta.items():      # header cards are ASCII: other characters as \\x.. escapes
            hdr.add_history(f"{key}: {value}".encode("ascii", "backslashreplace").decode("ascii"))
        fh.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        fh.write(hdr.tostring().encode("ascii"))
        self.data_bytes = 0

    def _write(self, batch):
        rec = np.zeros(batch.num_rows, self.dtype)
        for c, arr in zip(self.plan.columns, batch.columns):
            if c.kind == "str":
                values = [b"" if v is None else v.encode("utf-8") for v in arr.to_pylist()]
                rec[c.name] = np.array(values, dtype=f"S{self.widths[c.name]}")
            elif c.kind == "bool":
                v, null = _filled(arr, "bool", False)
                rec[c.name] = np.where(null, 0, np.where(v, ord("T"), ord("F")))
            elif c.kind.startswith("float"):
                rec[c.name] = _filled(arr, c.kind, np.nan)[0]
            else:
                rec[c.name] = _filled(arr, c.kind, _TNULL[c.kind])[0]
        raw = rec.tobytes()
        self.fh.write(raw)
        self.data_bytes += len(raw)

    def close(self):
        if self.rows != self.plan.n_rows:
            raise RuntimeError(f"wrote {self.rows} rows, the header says {self.plan.n_rows}")
        self.fh.write(b"\0" * (-self.data_bytes % 2880))


# --- VOTable -----------------------------------------------------------------------------------------------------
_VOT = {"bool": "boolean", "int16": "short", "int32": "int", "int64": "long", "float32": "float",
        "float64": "double"}


class VOTableWriter(Writer):
    def __init__(self, fh, plan, meta):
        super().__init__(fh, plan, meta)
        self.chars = {c.name: max(1, plan.text_bytes.get(c.name, 1)) for c in plan.columns if c.kind == "str"}
        fields, xml = [], []
        for c in plan.columns:
            if c.kind == "str":       # UCS-2: any name survives; UTF-8 bytes bound the number of characters
                dt, vot, size = (">u2", (self.chars[c.name],)), "unicodeChar", f' arraysize="{self.chars[c.name]}"'
            elif c.kind == "bool":
                dt, vot, size = "S1", "boolean", ""
            else:
                dt, vot, size = np.dtype(_NUMPY[c.kind]).newbyteorder(">"), _VOT[c.kind], ""
            fields.append(dt)
            attrs = f'name={quoteattr(c.name)} datatype="{vot}"{size}'
            attrs += f" unit={quoteattr(c.unit)}" if c.unit else ""
            attrs += f" ucd={quoteattr(c.ucd)}" if c.ucd else ""
            xml.append(f"   <FIELD {attrs}><DESCRIPTION>{escape(c.description)}</DESCRIPTION></FIELD>\n")
        self.nflag = (len(plan.columns) + 7) // 8
        self.dtype = np.dtype([("__nulls", "u1", (self.nflag,))]
                              + [(f"f{i}", *d) if isinstance(d, tuple) else (f"f{i}", d) for i, d in enumerate(fields)])
        infos = "".join(f"  <INFO name={quoteattr(k)} value={quoteattr(str(v))}/>\n" for k, v in meta.items())
        fh.write(('<?xml version="1.0" encoding="utf-8"?>\n'
                  '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
                  ' <RESOURCE type="results">\n' + infos +
                  f'  <TABLE name={quoteattr(meta.get("export", "export"))} nrows="{plan.n_rows}">\n'
                  f'   <DESCRIPTION>{escape(meta.get("description", ""))}</DESCRIPTION>\n' + "".join(xml) +
                  '   <DATA><BINARY2><STREAM encoding="base64">\n').encode("utf-8"))
        self.pending = b""

    def _write(self, batch):
        rec = np.zeros(batch.num_rows, self.dtype)
        flags = np.zeros((batch.num_rows, self.nflag), np.uint8)
        for i, (c, arr) in enumerate(zip(self.plan.columns, batch.columns)):
            name = f"f{i}"
            if c.kind == "str":
                null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
                text = np.array(arr.fill_null("").to_pylist(), dtype=f"<U{self.chars[c.name]}")
                codes = text.view(np.uint32).reshape(len(text), self.chars[c.name])
                rec[name] = np.where(codes > 0xFFFF, 0xFFFD, codes)
            elif c.kind == "bool":
                v, null = _filled(arr, "bool", False)
                rec[name] = np.where(null, b"?", np.where(v, b"T", b"F"))
            else:
                v, null = _filled(arr, c.kind, 0)
                rec[name] = v
            flags[:, i // 8] |= (null.astype(np.uint8) << (7 - i % 8))
        rec["__nulls"] = flags
        data = self.pending + rec.tobytes()
        cut = len(data) - len(data) % 3
        self.fh.write(base64.encodebytes(data[:cut]))
        self.pending = data[cut:]

    def close(self):
        if self.pending:
            self.fh.write(base64.encodebytes(self.pending))
        self.fh.write(b"   </STREAM></BINARY2></DATA>\n  </TABLE>\n </RESOURCE>\n</VOTABLE>\n")


# --- Parquet -----------------------------------------------------------------------------------------------------
class ParquetWriter(Writer):
    def __init__(self, fh, plan, meta):
        super().__init__(fh, plan, meta)
        import pyarrow.parquet as pq
        fields = []
        for c, f in zip(plan.columns, plan.schema):
            md = {k: v for k, v in (("unit", c.unit), ("ucd", c.ucd), ("description", c.description)) if v}
            fields.append(f.with_metadata(md))
        schema = pa.schema(fields, metadata={f"xpvae.{k}": str(v) for k, v in meta.items()})
        self.writer = pq.ParquetWriter(fh, schema)

    def _write(self, batch):
        self.writer.write_batch(batch)

    def close(self):
        self.writer.close()


# --- CSV (ECSV) --------------------------------------------------------------------------------------------------
class CsvWriter(Writer):
    def __init__(self, fh, plan, meta):
        super().__init__(fh, plan, meta)
        import pyarrow.csv as pacsv
        buf = io.StringIO()
        table = _astropy_table(plan.columns)
        table.meta.update({f"xpvae.{k}": str(v) for k, v in meta.items()})
        table.write(buf, format="ascii.ecsv", delimiter=",")
        fh.write(buf.getvalue().encode("utf-8"))      # the '#' header and the column-name line
        # booleans as ECSV spells them; everything else as pyarrow writes it (shortest round-trip floats)
        self.bools = [i for i, c in enumerate(plan.columns) if c.kind == "bool"]
        fields = [pa.field(f.name, pa.string()) if i in self.bools else f for i, f in enumerate(plan.schema)]
        self.schema = pa.schema(fields)
        self.writer = pacsv.CSVWriter(fh, self.schema, write_options=pacsv.WriteOptions(include_header=False))

    def _write(self, batch):
        import pyarrow.compute as pc
        cols = list(batch.columns)
        for i in self.bools:
            cols[i] = pc.if_else(cols[i], "True", "False")
        self.writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=self.schema))

    def close(self):
        self.writer.close()


WRITERS = {"fits": FitsWriter, "votable": VOTableWriter, "parquet": ParquetWriter, "csv": CsvWriter}
