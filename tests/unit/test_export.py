"""`xpvae export`: every format read back with astropy gives the database's values, NULLs as masked values,
units and descriptions; chunks stay small; the filter cannot leave its parentheses or write; nothing is
overwritten without --overwrite. Runs on SQLite and PostgreSQL."""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db import bulk
from db.export import EXPORTS, ExportError, check_where, open_export
from db.models_registry import get_model, register_model
from db.schema import analysis_statistics, jobs

N_STARS = 157          # not a multiple of any chunk size used below
SEED = 20261201


def _seed(engine, n: int = N_STARS, seed: int = SEED, latent_dim: int = 6) -> dict:
    """A model with inference results for n stars; some with photometry and positions, some labelled, and
    NULLs where the real pipeline leaves them (split, χ² without correlations, undecidable α class, …)."""
    rng = np.random.default_rng(seed)
    mid = register_model(engine, name="exp-m1", kind="svae", path="/nonexistent.pt",
                         config={"latent_dim": latent_dim}).model_id
    sid = np.unique(rng.integers(10**15, 10**15 + 10**9, 2 * n))[:n].astype(np.int64)
    assert len(sid) == n
    res: dict = {"model_id": [mid] * n, "source_id": sid,
                 "split": [rng.choice(["train", "validation", "test", None]) for _ in range(n)]}
    for i in range(1, latent_dim + 1):
        res[f"z{i}"] = rng.normal(size=n).astype(np.float32)
        res[f"z{i}_sigma"] = rng.uniform(0.01, 1, n).astype(np.float32)
    res["nll"] = rng.normal(-10, 5, n).astype(np.float32)
    score = rng.normal(0, 1, n).astype(np.float32)
    score[rng.random(n) < 0.1] = np.nan      # stars missing a band: no score
    res["anomaly_score"] = score
    res["anomaly_p"] = np.where(np.isnan(score), np.nan, rng.uniform(0, 1, n))
    chi = rng.uniform(0.5, 3, n)
    chi[rng.random(n) < 0.3] = np.nan        # stars without correlations: NULL
    res["bp_chi2_dof"] = chi
    phot_rows = rng.random(n) < 0.8
    ra = rng.uniform(0, 360, n)
    ra[rng.random(n) < 0.2] = np.nan
    phot = {"source_id": sid[phot_rows], "phot_g_mean_flux": rng.uniform(1e3, 1e6, phot_rows.sum()),
            "phot_g_mean_mag": rng.uniform(9, 17, phot_rows.sum()), "ra": ra[phot_rows],
            "dec": np.where(np.isnan(ra[phot_rows]), np.nan, rng.uniform(-90, 90, phot_rows.sum()))}
    lab_idx = np.flatnonzero(rng.random(n) < 0.5)
    high = [rng.choice([True, False, None]) for _ in lab_idx]
    labels = {"apogee_id": [f"2M{i:08d}" for i in range(len(lab_idx))], "telescope": ["apo25m"] * len(lab_idx),
              "field": ["f"] * len(lab_idx), "gaia_source_id": sid[lab_idx],
              "teff": rng.uniform(3500, 7000, len(lab_idx)), "m_h": rng.normal(0, 0.3, len(lab_idx)),
              "is_primary": [True] * len(lab_idx), "pristine": list(rng.random(len(lab_idx)) < 0.5),
              "high_alpha": high}
    with engine.begin() as conn:
        job = conn.execute(jobs.insert().values(kind="analyze_alpha", queue="analysis", params={})
                           .returning(jobs.c.id)).scalar()
        bulk.upsert_rows(conn, "inference_results", res, key=("model_id", "source_id"))
        bulk.upsert_rows(conn, "photometry", phot, key=("source_id",))
        bulk.upsert_rows(conn, "apogee_labels", labels, key=("apogee_id", "telescope", "field"))
        stats = []
        for k in range(23):
            binned = k % 3 == 0
            stats.append({"job_id": job, "model_id": mid, "report": "alpha", "sample": "pristine",
                          "statistic": "dip_p" if binned else "balanced_accuracy",
                          "subject": None if k == 5 else f"features {k} \u03b1, \"quoted\"",
                          "bin_var": "m_h" if binned else None, "bin_lo": -0.5 + k if binned else None,
                          "bin_hi": k if binned else None, "value": float(rng.random()),
                          "ci_lo": None if binned else 0.1, "ci_hi": None if binned else 0.9,
                          "n": None if k == 7 else int(rng.integers(10, 1000))})
        conn.execute(analysis_statistics.insert(), stats)
    return {"model_id": mid, "source_id": sid, "results": res, "phot": phot, "labels": labels, "lab_idx": lab_idx}


def _expected(engine, export: str, model_id: int, where: str = "1=1") -> dict[str, list]:
    """The export's rows straight from SQL (NULL = None), independently of the export code."""
    model = get_model(engine, model_id)
    view = EXPORTS[export]
    with engine.connect() as conn:
        has_pos = conn.execute(sa.text("SELECT count(ra) FROM photometry")).scalar() > 0
        sql, cols = view.build(model, has_pos)
        rows = conn.execute(sa.text(f"SELECT * FROM ({sql}) AS x WHERE {where} ORDER BY {view.order_by}"),
                            {"model_id": model_id}).all()
    return {c.name: [r[i] for r in rows] for i, c in enumerate(cols)}, cols


def _read_back(path, fmt):
    """The file as astropy reads it (Parquet through pandas: astropy's own reader ignores Parquet nulls)."""
    from astropy.table import Table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # 'dex' is no FITS unit; FITS logical NULL read as False (checked below)
        if fmt == "parquet":
            import pandas as pd
            return Table.from_pandas(pd.read_parquet(path, dtype_backend="numpy_nullable"))
        return Table.read(path, format={"fits": "fits", "votable": "votable", "csv": "ascii.ecsv"}[fmt])


def _compare(table, expected: dict, cols, fmt: str, path) -> None:
    assert table.colnames == [c.name for c in cols]
    for c in cols:
        want = expected[c.name]
        col = table[c.name]
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), bool).reshape(-1)
        null = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in want])
        if c.kind == "str" and fmt == "votable":
            # astropy ignores VOTable null flags on text columns (astropy issue 8995): NULL reads as ''
            got = [str(v) for v in np.asarray(col)]
            assert got == ["" if v is None else v for v in want], c.name
            continue
        if c.kind == "bool" and fmt == "fits":
            _check_fits_logical(path, c.name, want)
            continue
        assert (mask == null).all(), (fmt, c.name, np.flatnonzero(mask != null)[:5])
        vals = [v for v, m in zip(np.asarray(col.data if hasattr(col, "data") else col).tolist(), mask) if not m]
        ref = [v for v, m in zip(want, null) if not m]
        if c.kind == "str":
            vals = [v.decode() if isinstance(v, bytes) else v for v in vals]
            assert vals == ref, c.name
        elif c.kind.startswith("float"):
            dt = np.float32 if c.kind == "float32" else np.float64
            np.testing.assert_array_equal(np.asarray(vals, dt), np.asarray(ref, dt), err_msg=c.name)
        else:
            assert [int(v) for v in vals] == [int(v) for v in ref], c.name


def _check_fits_logical(path, name, want) -> None:
    """FITS logical NULL is the byte 0 (astropy shows it with logical_as_bytes=True; TOPCAT as null)."""
    from astropy.io import fits
    with fits.open(path, logical_as_bytes=True) as hdul:
        got = hdul[1].data[name].tolist()
    assert got == [b"" if v is None else (b"T" if v else b"F") for v in want], name   # numpy drops the 0 byte


@pytest.fixture
def cli(engine, monkeypatch, tmp_path):
    from db.engine import get_engine
    from xpvae.cli import main
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("XPVAE_DATABASE_URL", url)
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    runner = CliRunner()
    yield lambda *args: runner.invoke(main, ["export", *args], catch_exceptions=False)
    get_engine(url).dispose()      # the CLI's engine for this URL: its connections closed before the next test


@pytest.mark.parametrize("fmt", ["fits", "votable", "parquet", "csv"])
def test_latents_round_trip_through_astropy(engine, cli, tmp_path, fmt):
    seeded = _seed(engine)
    out = tmp_path / f"latents.{fmt}"
    r = cli("latents", "--model", str(seeded["model_id"]), "--format", fmt, "--out", str(out), "--chunk-rows", "10")
    assert r.exit_code == 0, r.output
    assert f"wrote {N_STARS:,} rows" in r.output
    expected, cols = _expected(engine, "latents", seeded["model_id"])
    assert {"ra", "dec", "high_alpha", "split", "apogee_id"} <= set(expected)
    assert any(v is None for v in expected["high_alpha"]) and any(v is None for v in expected["split"])
    table = _read_back(out, fmt)
    assert len(table) == N_STARS
    _compare(table, expected, cols, fmt, out)
    if fmt != "parquet":      # Parquet's units: test_units_descriptions_and_ucds_are_written
        assert str(table["ra"].unit) == "deg" and str(table["teff"].unit) == "K"
    if fmt in ("votable", "csv"):   # FITS keeps descriptions in TCOMMn, which astropy does not read
        assert "posterior mean" in table["z1"].description


@pytest.mark.parametrize("fmt", ["fits", "votable", "parquet", "csv"])
def test_statistics_round_trip_with_a_filter(engine, cli, tmp_path, fmt):
    seeded = _seed(engine, seed=SEED + 1)
    out = tmp_path / f"stats.{fmt}"
    where = "statistic = 'dip_p' OR n IS NULL OR subject = '\u03b1 only'"     # not ASCII: FITS HISTORY escapes it
    r = cli("statistics", "--model", "exp-m1", "--out", str(out), "--format", fmt, "--where", where)
    assert r.exit_code == 0, r.output
    expected, cols = _expected(engine, "statistics", seeded["model_id"], where)
    assert len(expected["id"]) == 9        # 8 binned rows (k % 3 == 0) and k == 7
    _compare(_read_back(out, fmt), expected, cols, fmt, out)


def test_filter_text_is_taken_literally(engine, cli, tmp_path):
    """Colons, percent signs and casts in the filter are SQL, not bind parameters or format codes."""
    seeded = _seed(engine, n=30, seed=SEED + 7)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE analysis_statistics SET subject = 'a:b 50%' WHERE id = (SELECT min(id) "
                             "FROM analysis_statistics)"))
    out = tmp_path / "lit.csv"
    where = "subject = 'a:b 50%' OR (subject LIKE 'features 1%' AND CAST(n AS TEXT) <> ':x')"
    r = cli("statistics", "--model", "exp-m1", "--out", str(out), "--where", where)
    assert r.exit_code == 0, r.output
    expected, cols = _expected(engine, "statistics", seeded["model_id"], where.replace(":", "\\:"))  # text() escape
    table = _read_back(out, "csv")
    assert "a:b 50%" in list(table["subject"]) and len(table) == len(expected["id"]) > 1
    _compare(table, expected, cols, "csv", out)


def test_units_descriptions_and_ucds_are_written(engine, cli, tmp_path):
    import pyarrow.parquet as pq
    from astropy.io import fits
    from astropy.io.votable import parse_single_table
    seeded = _seed(engine, n=12, seed=SEED + 2)
    for suffix in ("fits", "vot", "parquet"):
        assert cli("latents", "--model", "exp-m1", "--out", str(tmp_path / f"l.{suffix}")).exit_code == 0
    hdr = fits.getheader(tmp_path / "l.fits", 1)
    i = [hdr[f"TTYPE{k}"] for k in range(1, hdr["TFIELDS"] + 1)].index("ra") + 1
    assert (hdr[f"TUNIT{i}"], hdr[f"TUCD{i}"]) == ("deg", "pos.eq.ra;meta.main")
    assert "right ascension" in hdr[f"TCOMM{i}"]
    vot = parse_single_table(tmp_path / "l.vot")
    field = vot.get_field_by_id("dec")
    assert field.ucd == "pos.eq.dec;meta.main" and str(field.unit) == "deg" and "declination" in field.description
    meta = pq.read_schema(tmp_path / "l.parquet").field("teff").metadata
    assert meta[b"unit"] == b"K" and meta[b"ucd"] == b"phys.temperature.effective"
    assert seeded["model_id"]


def test_positions_are_left_out_when_photometry_has_none(engine, cli, tmp_path):
    seeded = _seed(engine, n=20, seed=SEED + 3)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE photometry SET ra = NULL, dec = NULL"))
    out = tmp_path / "nopos.csv"
    assert cli("latents", "--model", str(seeded["model_id"]), "--out", str(out)).exit_code == 0
    table = _read_back(out, "csv")
    assert "ra" not in table.colnames and "phot_g_mean_mag" in table.colnames and len(table) == 20


def test_chunks_never_exceed_chunk_rows(engine):
    seeded = _seed(engine, n=1000, seed=SEED + 4, latent_dim=3)
    model = get_model(engine, seeded["model_id"])
    with open_export(engine, "latents", model, where="z1 > -10", chunk_rows=64) as (plan, batches):
        sizes = [next(batches).num_rows]
        if engine.dialect.name == "postgresql":   # rows come from a server-side cursor, 64 at a time
            with engine.connect() as other:
                fetching = other.execute(sa.text(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state = 'idle in transaction'")).scalars().all()
            sizes_asked = [int(q.split()[2]) for q in fetching if q.startswith("FETCH FORWARD ")]
            assert sizes_asked and max(sizes_asked) <= 64, fetching
        sizes += [b.num_rows for b in batches]
    assert plan.n_rows == 1000 and sum(sizes) == 1000 and max(sizes) <= 64 and len(sizes) >= 1000 // 64
    assert "z3" in plan.schema.names and "z4" not in plan.schema.names    # the model's own latent dimension


@pytest.mark.parametrize("where, why", [
    ("1=1; DELETE FROM models", "separator"),
    ("1=1) UNION SELECT * FROM (SELECT 1", "')' without"),
    ("(z1 > 0", "'(' without"),
    ("split = 'test", "unterminated"),
    ("z1 > 0 -- and the rest", "comment"),
    ("z1 > 0 /* x */", "comment"),
    ("split = E'\\'' OR 1=1", "backslash"),
    ("split = $$x$$", "dollar"),
    ("   ", "empty"),
])
def test_filters_that_could_leave_their_parentheses_are_refused(where, why):
    with pytest.raises(ExportError, match=re.escape(why)):
        check_where(where)


def test_quotes_may_hold_parentheses_and_doubled_quotes():
    assert check_where("subject = 'a) OR (1=1' AND bin_var IS NULL") and check_where("apogee_id = 'O''Brien'")


def test_cli_refuses_bad_filters_writes_and_clobbering(engine, cli, tmp_path):
    seeded = _seed(engine, n=15, seed=SEED + 5)
    m = str(seeded["model_id"])
    out = tmp_path / "x.fits"
    out.write_bytes(b"precious")
    r = cli("latents", "--model", m, "--out", str(out))
    assert r.exit_code == 2 and "--overwrite" in r.output and out.read_bytes() == b"precious"
    r = cli("latents", "--model", m, "--out", str(tmp_path / "y.fits"), "--where", "nonexistent_column > 1")
    assert r.exit_code == 2 and "--where" in r.output and not (tmp_path / "y.fits").exists()
    if engine.dialect.name == "postgresql":   # a write hidden in a filter fails in the read-only transaction
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT last_value FROM jobs_id_seq")).scalar()
        r = cli("latents", "--model", m, "--out", str(tmp_path / "z.fits"),
                "--where", "(SELECT setval('jobs_id_seq', 999)) > 0")
        assert r.exit_code == 2 and "read-only" in r.output, r.output
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT last_value FROM jobs_id_seq")).scalar() == before
    r = cli("latents", "--model", m, "--out", str(out), "--overwrite", "--where", "split = 'test'")
    assert r.exit_code == 0 and out.read_bytes()[:6] == b"SIMPLE"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no temporary file left
    assert cli("latents", "--model", "no-such-model", "--out", str(tmp_path / "n.fits")).exit_code == 4
    assert cli("latents", "--model", "../etc/passwd", "--out", str(tmp_path / "n.fits")).exit_code == 2
    assert cli("latents", "--model", m, "--out", str(tmp_path / "n.txt")).exit_code == 2
    assert cli("latents", "--model", m, "--out", str(tmp_path)).exit_code == 2
    from db.engine import get_engine  # the exporting connection is writable again for other work
    with get_engine(engine.url.render_as_string(hide_password=False)).begin() as conn:
        conn.execute(sa.text("UPDATE models SET summary = NULL"))


@pytest.mark.parametrize("fmt", ["fits", "votable", "parquet", "csv"])
def test_scores_round_trip_with_nulls_and_a_filter(engine, cli, tmp_path, fmt):
    seeded = _seed(engine, seed=SEED + 7)
    out = tmp_path / f"scores.{fmt}"
    where = "anomaly_score > 1 OR anomaly_score IS NULL"
    r = cli("scores", "--model", str(seeded["model_id"]), "--format", fmt, "--out", str(out), "--where", where)
    assert r.exit_code == 0, r.output
    expected, cols = _expected(engine, "scores", seeded["model_id"], where)
    assert any(v is None for v in expected["anomaly_score"]) and len(expected["source_id"]) < N_STARS
    assert {"ra", "dec", "anomaly_p", "anomaly_score_bp"} <= set(expected)
    table = _read_back(out, fmt)
    assert len(table) == len(expected["source_id"])
    _compare(table, expected, cols, fmt, out)


@pytest.mark.parametrize("fmt", ["fits", "votable", "parquet", "csv"])
def test_alpha_round_trip_with_nulls_and_a_filter(engine, cli, tmp_path, fmt):
    """P(high-α) rows of one model (another model's rows must stay out), NULL classes of unlabelled stars kept."""
    from db.schema import alpha_probabilities
    seeded = _seed(engine, seed=SEED + 8)
    other = register_model(engine, name="exp-m2", kind="svae", path="/nonexistent.pt").model_id
    rng = np.random.default_rng(SEED + 8)
    p = rng.uniform(0, 1, len(seeded["source_id"]))
    p[:3] = (0.0, 1.0, 0.7)                       # the ends and the filter's edge
    with engine.begin() as conn:
        job = conn.execute(jobs.insert().values(kind="analyze_alpha_catalogue", queue="analysis", params={})
                           .returning(jobs.c.id)).scalar()
        conn.execute(alpha_probabilities.insert(), [
            {"model_id": m, "source_id": int(s), "p_high_alpha": float(q if m == seeded["model_id"] else 1 - q),
             "job_id": job} for m in (seeded["model_id"], other) for s, q in zip(seeded["source_id"], p)])
    out = tmp_path / f"alpha.{fmt}"
    where = "p_high_alpha >= 0.7"
    r = cli("alpha", "--model", str(seeded["model_id"]), "--format", fmt, "--out", str(out), "--where", where)
    assert r.exit_code == 0, r.output
    expected, cols = _expected(engine, "alpha", seeded["model_id"], where)
    assert len(expected["source_id"]) == int(np.sum(p >= 0.7)) < N_STARS
    assert set(expected["classifier_job_id"]) == {job}
    assert any(v is None for v in expected["high_alpha"]) and {"ra", "dec"} <= set(expected)
    table = _read_back(out, fmt)
    assert len(table) == len(expected["source_id"])
    _compare(table, expected, cols, fmt, out)


def test_empty_export_is_a_valid_file(engine, cli, tmp_path):
    seeded = _seed(engine, n=5, seed=SEED + 6)
    for fmt in ("fits", "votable", "parquet", "csv"):
        out = tmp_path / f"e.{fmt}"
        assert cli("latents", "--model", str(seeded["model_id"]), "--format", fmt, "--out", str(out),
                   "--where", "z1 > 1e9").exit_code == 0
        assert len(_read_back(out, fmt)) == 0
