"""The synthetic Gaia XP × APOGEE survey: in memory (``generate``) or as the files users download
(``simulate_survey``). See docs/simulator.md.

Determinism: stars are made in fixed blocks of ``BLOCK`` stars, block k drawing from
``numpy.random.default_rng([seed, k])``. So a survey depends only on (n_stars, seed, settings) — never on
``chunk_size`` (which only splits files) — and the same seed with another ``alpha_signal`` or
``label_fraction`` gives the same stars, noise and photometry (only the α features / label rows change).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from shared.progress import Progress
from shared.quality import EXTRATARG_DUPLICATE_BIT
from shared.xp import XPBatch, g_flux_from_mag

from . import anomalies as anomaly
from .labels import label_probability, simulate_actions, simulate_labels
from .noise import CorrelationTemplates, ErrorModel, stored_error_model
from .populations import POPULATIONS, Stars, draw_stars, is_giant, is_high_alpha, normalise_mix
from .spectra import DEFAULT_COEFFICIENTS, check_coefficient_model, noise_free_coefficients, observe

BLOCK = 4096
NPIX12 = 12 * 4**12
FORMATS = ("csv", "ecsv", "fits", "bulk", "catalogue")
MAG_LIMITS = (6.0, 20.0)      # the calibrated error model covers G ≈ 7–20
PHOTOMETRY_FILE = "photometry.csv"
ALLSTAR_FILE = "allStar-dr17-synspec_rev1-sim.fits"
TRUTH_FILE = "truth.parquet"
CATALOGUE_FILE = "xp_apogee_cat.h5"
MANIFEST_FILE = "manifest.json"


@dataclass
class Block:
    """One block of simulated stars: records, truth, photometry, label rows (and the star of each row)."""
    batch: XPBatch
    truth: dict[str, np.ndarray]
    photometry: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    label_index: np.ndarray          # block-local star index of each label row
    actions: dict[str, np.ndarray]


@dataclass
class SimulationSummary:
    out_dir: Path
    n_stars: int
    seed: int
    alpha_signal: float
    label_fraction: float
    coefficients: str = DEFAULT_COEFFICIENTS
    n_label_rows: int = 0
    n_missing_bp: int = 0
    n_missing_rp: int = 0
    high_alpha_fraction_giants: float = float("nan")
    seconds: float = 0.0
    files: dict[str, list[str]] = field(default_factory=dict)   # kind → paths relative to out_dir

    def to_json(self) -> str:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return json.dumps(d, indent=2)


def validate_arguments(n_stars: int, seed: int, alpha_signal: float, label_fraction: float,
                       mag_range: Sequence[float], formats: Sequence[str] = ("csv",), chunk_size: int = 5000,
                       population_mix: Mapping[str, float] | None = None,
                       coefficients: str = DEFAULT_COEFFICIENTS, anomaly_fraction: float = 0.0) -> dict[str, float]:
    """Raise ValueError with a message fit for click.BadParameter; return the normalised population mix."""
    if not isinstance(n_stars, (int, np.integer)) or n_stars < 1:
        raise ValueError(f"n_stars must be a positive integer, got {n_stars!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not np.isfinite(alpha_signal) or alpha_signal < 0:
        raise ValueError(f"alpha_signal must be finite and ≥ 0 (1 = default strength), got {alpha_signal!r}")
    if not (0.0 <= label_fraction <= 1.0):
        raise ValueError(f"label_fraction must lie in [0, 1], got {label_fraction!r}")
    lo, hi = (float(v) for v in mag_range)
    if not (MAG_LIMITS[0] <= lo < hi <= MAG_LIMITS[1]):
        raise ValueError(f"mag_range must satisfy {MAG_LIMITS[0]} ≤ min < max ≤ {MAG_LIMITS[1]} (the range the "
                         f"error model was calibrated on), got ({lo}, {hi})")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {bad}; choose from {list(FORMATS)}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    check_coefficient_model(coefficients)
    anomaly.check_fraction(anomaly_fraction)
    return normalise_mix(population_mix)


def simulate_block(seed: int, k: int, n_total: int, *, alpha_signal: float, label_fraction: float,
                   mag_range: Sequence[float], mix: Mapping[str, float], templates: CorrelationTemplates,
                   error_model: ErrorModel, with_correlations: bool = True,
                   coefficients: str = DEFAULT_COEFFICIENTS, anomaly_fraction: float = 0.0) -> Block:
    """Stars k·BLOCK … min((k+1)·BLOCK, n_total) − 1 of the survey (``anomaly_fraction``: anomalies.py)."""
    start, stop = k * BLOCK, min((k + 1) * BLOCK, n_total)
    n = stop - start
    rng = np.random.default_rng([seed, k])
    stars = draw_stars(rng, n, mix, tuple(mag_range))
    # source_id = HEALPix-12 index × 2^35 + running number: increasing with the star's index, so file chunks
    # cover contiguous HEALPix ranges like the bulk release, and unique by construction.
    idx = np.arange(start, stop, dtype=np.int64)
    hp12 = np.minimum(((idx + rng.random(n)) / n_total * NPIX12).astype(np.int64), NPIX12 - 1)
    source_id = hp12 * 2**35 + idx + 1
    truth_flux = noise_free_coefficients(stars, alpha_signal, coefficients)
    anomalies = anomaly.choose(seed, k, n, anomaly_fraction) if anomaly_fraction > 0 else None
    if anomalies is not None:
        truth_flux = anomaly.inject_spectra(anomalies, stars, truth_flux, alpha_signal, coefficients)
    batch = observe(rng, truth_flux, error_model, templates, source_id, with_correlations)

    g_obs = stars.g_mag + rng.normal(0.0, 0.0003 + 0.002 * 10 ** (0.4 * (stars.g_mag - 17.0)), n)
    photometry = {"source_id": source_id, "phot_g_mean_flux": g_flux_from_mag(g_obs),
                  "phot_g_mean_mag": g_obs.astype(np.float32),
                  "phot_bp_mean_mag": (truth_flux.mags[:, 1] + rng.normal(0, 0.003, n)).astype(np.float32),
                  "phot_rp_mean_mag": (truth_flux.mags[:, 2] + rng.normal(0, 0.003, n)).astype(np.float32)}
    # APOGEE-like targeting (labels.label_probability); one uniform draw per star whatever the fraction.
    labelled = rng.random(n) < label_probability(stars.teff, stars.logg, label_fraction)
    labels, label_index = simulate_labels(rng, stars, source_id, truth_flux.mags[:, 1], truth_flux.mags[:, 2],
                                          labelled)
    actions = simulate_actions(rng, stars)
    truth = _truth_columns(stars, source_id, truth_flux.mags, labelled)
    if anomalies is not None:
        anomaly.inject_photometry(anomalies, photometry)
        truth.update(anomalies.truth_columns())
    truth["coefficients_true"] = truth_flux.coefficients
    return Block(batch=batch, truth=truth, photometry=photometry, labels=labels, label_index=label_index,
                 actions=actions)


def _truth_columns(stars: Stars, source_id: np.ndarray, mags: np.ndarray, labelled: np.ndarray) -> dict:
    return {"source_id": source_id, "population": np.asarray(POPULATIONS)[stars.population],
            "teff": stars.teff, "logg": stars.logg, "m_h": stars.m_h, "alpha_m": stars.alpha_m,
            "fe_h": stars.fe_h, "mg_fe": stars.mg_fe, "ebv": stars.ebv, "g_mag": stars.g_mag,
            "bp_mag": mags[:, 1], "rp_mag": mags[:, 2], "carbon": stars.carbon,
            "high_alpha": is_high_alpha(stars.fe_h, stars.mg_fe), "giant": is_giant(stars.teff, stars.logg),
            "labelled": labelled}


def iter_blocks(n_stars: int, seed: int, alpha_signal: float = 1.0, label_fraction: float = 0.3,
                mag_range: Sequence[float] = (9.0, 17.5), population_mix: Mapping[str, float] | None = None,
                with_correlations: bool = True, progress: Progress | None = None,
                coefficients: str = DEFAULT_COEFFICIENTS, anomaly_fraction: float = 0.0) -> Iterator[Block]:
    """Yield the survey block by block (bounded memory for any n_stars)."""
    mix = validate_arguments(n_stars, seed, alpha_signal, label_fraction, mag_range, population_mix=population_mix,
                             coefficients=coefficients, anomaly_fraction=anomaly_fraction)
    templates = CorrelationTemplates.make(seed)
    error_model = stored_error_model()
    n_blocks = -(-n_stars // BLOCK)
    for k in range(n_blocks):
        yield simulate_block(seed, k, n_stars, alpha_signal=alpha_signal, label_fraction=label_fraction,
                             mag_range=mag_range, mix=mix, templates=templates, error_model=error_model,
                             with_correlations=with_correlations, coefficients=coefficients,
                             anomaly_fraction=anomaly_fraction)
        if progress:
            progress(min((k + 1) * BLOCK, n_stars), n_stars, "simulating spectra")


def _concat_dicts(dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]} if dicts else {}


def generate(n_stars: int, seed: int, alpha_signal: float = 1.0, label_fraction: float = 0.3,
             mag_range: Sequence[float] = (9.0, 17.5), population_mix: Mapping[str, float] | None = None,
             with_correlations: bool = True, progress: Progress | None = None,
             coefficients: str = DEFAULT_COEFFICIENTS, anomaly_fraction: float = 0.0
             ) -> tuple[XPBatch, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The survey in memory: (XPBatch, truth, labels, photometry).

    truth: one row per star (source_id, population name, teff, logg, m_h, alpha_m, fe_h, mg_fe, ebv, g_mag,
    bp_mag, rp_mag, carbon, high_alpha (Patil split of the true FE_H/MG_FE), giant, labelled,
    coefficients_true (N, 110) noise-free at the star's G). coefficients: how SEDs become coefficients
    (spectra.COEFFICIENT_MODELS: "forward", the default, "ridge" or "forward-uncorrected"). labels: APOGEE rows
    with the lower-case keys of shared.xp.APOGEE_COLUMNS (duplicates, flags and NaNs included).
    photometry: PHOTOMETRY_COLUMNS.
    With ``anomaly_fraction`` > 0 (anomalies.py) truth also holds ``anomaly`` (kind, '' for a normal star) and
    ``anomaly_strength``.
    """
    blocks = list(iter_blocks(n_stars, seed, alpha_signal, label_fraction, mag_range, population_mix,
                              with_correlations, progress, coefficients, anomaly_fraction))
    return (XPBatch.concat(b.batch for b in blocks), _concat_dicts([b.truth for b in blocks]),
            _concat_dicts([b.labels for b in blocks]), _concat_dicts([b.photometry for b in blocks]))


# ---- writing a survey to disk ---------------------------------------------------------------------------------

def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"output directory {out_dir} exists and is not empty; choose a new or empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


class _XPChunker:
    """Collects records and writes them in files of exactly chunk_size sources (the last may be shorter)."""

    def __init__(self, root: Path, formats: Sequence[str], chunk_size: int, files: dict[str, list[str]]):
        self.root, self.formats, self.chunk_size, self.files = root, formats, chunk_size, files
        self.pending: list[XPBatch] = []
        self.n_pending = 0
        self.n_chunks = 0
        for f in formats:
            if f != "catalogue":
                (root / "xp" / f).mkdir(parents=True, exist_ok=True)

    def add(self, batch: XPBatch) -> None:
        self.pending.append(batch)
        self.n_pending += len(batch)
        while self.n_pending >= self.chunk_size:
            self._flush(self.chunk_size)

    def close(self) -> None:
        if self.n_pending:
            self._flush(self.n_pending)

    def _flush(self, n: int) -> None:
        from . import writers
        allb = XPBatch.concat(self.pending)
        chunk, rest = allb.take(slice(0, n)), allb.take(slice(n, None))
        self.pending, self.n_pending = ([rest] if len(rest) else []), len(rest)
        stem = f"XP_CONTINUOUS_RAW_{self.n_chunks:04d}"
        for f in self.formats:
            if f == "csv":
                path = writers.write_xp_csv(chunk, self.root / "xp" / f / f"{stem}.csv")
            elif f == "ecsv":
                path = writers.write_xp_ecsv(chunk, self.root / "xp" / f / f"{stem}.ecsv")
            elif f == "fits":
                path = writers.write_xp_fits(chunk, self.root / "xp" / f / f"{stem}.fits")
            elif f == "bulk":
                name = writers.bulk_file_name(chunk["source_id"])
                path = writers.write_xp_ecsv(chunk, self.root / "xp" / f / name, compress=True)
            else:
                continue
            self.files.setdefault(f, []).append(path.relative_to(self.root).as_posix())
        self.n_chunks += 1


def simulate_survey(n_stars: int, seed: int, alpha_signal: float = 1.0, label_fraction: float = 0.3,
                    out_dir: Path | str = "survey", formats: Sequence[str] = ("csv",),
                    mag_range: Sequence[float] = (9.0, 17.5), population_mix: Mapping[str, float] | None = None,
                    chunk_size: int = 5000, progress: Progress | None = None,
                    coefficients: str = DEFAULT_COEFFICIENTS, anomaly_fraction: float = 0.0) -> SimulationSummary:
    """Simulate a survey and write it to ``out_dir`` (created; must not exist or be empty).

    Always written: photometry.csv, allStar-dr17-synspec_rev1-sim.fits, truth.parquet, manifest.json.
    Per format: ``xp/csv/XP_CONTINUOUS_RAW_NNNN.csv``, ``xp/ecsv/….ecsv``, ``xp/fits/….fits``,
    ``xp/bulk/XpContinuousMeanSpectrum_<hpmin>-<hpmax>.csv.gz`` (chunk_size sources per file), and
    ``xp_apogee_cat.h5`` for ``catalogue``. Files appear under out_dir only once all are complete (written
    into a hidden sibling directory, renamed at the end).
    """
    from . import writers

    formats = tuple(dict.fromkeys(formats))
    validate_arguments(n_stars, seed, alpha_signal, label_fraction, mag_range, formats, chunk_size, population_mix,
                       coefficients, anomaly_fraction)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    tmp = _prepare_out_dir(out_dir)
    summary = SimulationSummary(out_dir=out_dir, n_stars=int(n_stars), seed=int(seed),
                                alpha_signal=float(alpha_signal), label_fraction=float(label_fraction),
                                coefficients=coefficients)
    files = summary.files
    try:
        chunker = _XPChunker(tmp, formats, chunk_size, files)
        truth_writer = writers.TruthWriter(tmp / TRUTH_FILE)
        label_parts: list[dict] = []
        catalogue_parts: list[tuple] = []
        giants = high_giants = 0
        anomalies: dict[str, int] = {}
        for k, block in enumerate(iter_blocks(n_stars, seed, alpha_signal, label_fraction, mag_range,
                                              population_mix, coefficients=coefficients,
                                              anomaly_fraction=anomaly_fraction)):
            chunker.add(block.batch)
            truth = dict(block.truth)
            truth_writer.write({c: v for c, v in truth.items() if c != "coefficients_true"},
                               truth["coefficients_true"])
            writers.write_photometry_csv(block.photometry, tmp / PHOTOMETRY_FILE, append=k > 0)
            label_parts.append(block.labels)
            if "catalogue" in formats:
                catalogue_parts.append(_catalogue_rows(block))
            summary.n_missing_bp += int(block.batch["bp_missing"].sum())
            summary.n_missing_rp += int(block.batch["rp_missing"].sum())
            giants += int(truth["giant"].sum())
            high_giants += int((truth["giant"] & truth["high_alpha"]).sum())
            if "anomaly" in truth:
                kinds, counts = np.unique(truth["anomaly"][truth["anomaly"] != ""], return_counts=True)
                for kind, count in zip(kinds.tolist(), counts.tolist()):
                    anomalies[kind] = anomalies.get(kind, 0) + count
            if progress:
                progress(min((k + 1) * BLOCK, n_stars), n_stars, "simulating and writing")
        chunker.close()
        truth_writer.close()
        files["truth"] = [TRUTH_FILE]
        files["photometry"] = [PHOTOMETRY_FILE]
        labels = _concat_dicts(label_parts)
        summary.n_label_rows = int(len(labels.get("apogee_id", [])))
        if summary.n_label_rows:
            writers.write_allstar_fits(labels, tmp / ALLSTAR_FILE)
            files["allstar"] = [ALLSTAR_FILE]
        if "catalogue" in formats:
            _write_catalogue(catalogue_parts, tmp / CATALOGUE_FILE)
            files["catalogue"] = [CATALOGUE_FILE]
        summary.high_alpha_fraction_giants = high_giants / giants if giants else float("nan")
        summary.seconds = time.perf_counter() - t0
        manifest = json.loads(summary.to_json())
        manifest.update(formats=list(formats), mag_range=list(map(float, mag_range)), chunk_size=int(chunk_size),
                        population_mix=normalise_mix(population_mix), out_dir=None)
        if anomaly_fraction > 0:         # only then: the default manifest stays as it was
            manifest.update(anomaly_fraction=float(anomaly_fraction), anomalies=anomalies)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        files["manifest"] = [MANIFEST_FILE]
        os.replace(tmp, out_dir)          # atomic on one filesystem; an empty existing out_dir is replaced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        progress(n_stars, n_stars, f"wrote {out_dir}")
    return summary


def _catalogue_rows(block: Block) -> tuple:
    """Cross-matched stars of a block for the catalogue: primary (non-duplicate) label rows with a Gaia match
    and both XP bands."""
    lab = block.labels
    primary = ((lab["extratarg"] & (1 << EXTRATARG_DUPLICATE_BIT)) == 0) & (lab["gaia_source_id"] > 0)
    rows = np.flatnonzero(primary)
    stars = block.label_index[rows]
    ok = ~block.batch["bp_missing"][stars] & ~block.batch["rp_missing"][stars]
    rows, stars = rows[ok], stars[ok]
    xp = block.batch.without_correlations().take(stars)
    phot = {k: v[stars] for k, v in block.photometry.items()}
    return xp, phot, {k: v[rows] for k, v in lab.items()}, {k: v[stars] for k, v in block.actions.items()}


def _write_catalogue(parts: list[tuple], path: Path) -> None:
    from .writers import write_catalogue_h5
    xp = XPBatch.concat(p[0] for p in parts)
    write_catalogue_h5(xp, _concat_dicts([p[1] for p in parts]), _concat_dicts([p[2] for p in parts]),
                       _concat_dicts([p[3] for p in parts]), path)


__all__ = ["generate", "simulate_survey", "iter_blocks", "SimulationSummary", "FORMATS"]


def labelled_survey(n_stars: int, seed: int, *, alpha_signal: float, label_fraction: float, g_max: float,
                    db_path: str | Path) -> dict:
    """An in-memory survey ready for training and the [α/M] analysis, as the pipeline sees it: labels
    cross-matched through a SQLite database at ``db_path`` (primary rows only) and G-flux-normalised spectra.
    Returns x, e (N, 110), labels (per star, ``labelled`` marks matches), phot, truth and the XP batch."""
    from db.engine import create_engine
    from db.labels import read_labels, write_apogee
    from db.migrate import upgrade
    from shared.preprocessing import normalise_by_flux
    batch, truth, labels, phot = generate(n_stars, seed, alpha_signal=alpha_signal, label_fraction=label_fraction,
                                          mag_range=(9.0, g_max), with_correlations=False)
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        upgrade(engine)
        with engine.begin() as conn:
            write_apogee(conn, labels, "sim")
        lab = read_labels(engine, np.asarray(batch["source_id"]))
    finally:
        engine.dispose()
    x, e = normalise_by_flux(batch.coefficients110(), batch.errors110(), phot["phot_g_mean_flux"])
    return {"x": x, "e": e, "labels": lab, "phot": phot, "truth": truth, "batch": batch}
