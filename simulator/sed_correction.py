"""Empirical SED correction for the forward model: a smooth, colour-dependent factor on the schematic SEDs, fitted
through the instrument model so that simulated coefficient shapes match the real sources' at matched colour.

The schematic SEDs (sed.py) lack what a model-atmosphere library would carry: the detailed continuum of F/G stars,
the molecular bands of K and M dwarfs (MgH, strong TiO, VO), the depth of the blue blends in K stars. Rather than
tune each, the forward model multiplies every SED by

    f(λ; q) = exp( Σₙ hₙ(q) Σⱼ aₙⱼ Bⱼ(λ) )

Bⱼ are Gaussian bumps in λ (BASIS_CENTRES_NM, σ = BASIS_WIDTH of their spacing: 12 nm in BP, 18 nm in RP, wider
than the SED's features, so it reshapes blends and continuum but makes or erases no line); hₙ(q) are linear-
interpolation weights on colour nodes qₙ (constant beyond the end nodes). q is the colour log10(RP c₀ / BP c₀) of
the star's α-free *continuum* (Planck × blanketing × extinction through the forward model), never of its final SED:
the factor carries no [α/M] information, so with alpha_signal = 0 the SED stays bit-identical for any [α/M], and
the α features keep responding to [M/H] + alpha_signal·[α/M] on top of it.

The amplitudes a (n_nodes × n_basis) are fitted (``fit_sed_correction``) on the even-HEALPix half of the real
sources: in each real colour octile (12 < G < 17) the simulated mean c_k/c₀ (k = 1…FIT_ORDERS, both bands, noise-
free, CORRECTION_STARS stars of seed CORRECTION_SEED) is driven to the real median, each order weighted by the real
median |c_k|/c₀ of the bin (so the misfit reads in dex); a penalty keeps each bin's mean colour (the c₀ ratio: Teff
and reddening decide it) and Tikhonov terms keep a small and smooth in λ and in q. Simulated stars are binned by
their uncorrected colour (the colour penalty keeps them there), which keeps the misfit smooth; Levenberg–Marquardt
steps. The odd half and other seeds are held out (tests/unit/test_sim_realism.py). Stored in ``sed_calibration.py``
by ``python -m simulator.calibrate --sed``; refit it whenever the instrument model (instrument.py,
instrument_calibration.py) or sed.py changes.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.xp import N_COEFF

#: Bump centres (nm): every 20 nm across BP, every 30 nm across RP, covering the forward grid (326–1080 nm).
BASIS_CENTRES_NM = np.concatenate([np.arange(330.0, 681.0, 20.0), np.arange(710.0, 1071.0, 30.0)])
BASIS_WIDTH = 0.6
#: The fit: simulated stars and seed, orders per band, Gauss–Newton iterations and step, penalty weights.
CORRECTION_SEED = 101
CORRECTION_STARS = 6000
FIT_ORDERS = 12
#: Orders FIT_ORDERS+1…MODEL_ORDERS are held at their uncorrected simulated values (per-bin mean), so the
#: correction does not buy the fitted orders with structure above them.
MODEL_ORDERS = 20
HELD_WEIGHT = 0.3
FIT_G_RANGE = (12.0, 17.0)
FIT_BINS = 8
ITERATIONS = 5
COLOUR_WEIGHT = 100.0           # 1 residual unit per 0.01 dex change of a bin's mean colour
RIDGE = 0.05
SMOOTH_LAMBDA = 3.0             # second differences along λ
SMOOTH_COLOUR = 0.05            # first differences between colour nodes
SCALE_FLOOR = 1e-4              # smallest |c_k|/c₀ a residual is measured against


def basis_functions(wavelength: np.ndarray) -> np.ndarray:
    """(n_basis, n_wavelengths) Gaussian bumps Bⱼ(λ)."""
    wl = np.asarray(wavelength, float)
    spacing = np.gradient(BASIS_CENTRES_NM)
    sigma = BASIS_WIDTH * spacing
    return np.exp(-0.5 * ((wl[None, :] - BASIS_CENTRES_NM[:, None]) / sigma[:, None]) ** 2)


def continuum_colour(continuum: np.ndarray, c0_weights: np.ndarray) -> np.ndarray:
    """log10(RP c₀ / BP c₀) of SEDs (N, n_wl), with c0_weights (n_wl, 2) the BP and RP c₀ per unit sample."""
    c0 = continuum @ c0_weights
    return np.log10(c0[:, 1] / c0[:, 0])


def node_weights(q: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(N, n_nodes) linear-interpolation weights of colours q on the nodes, constant beyond the end nodes."""
    q = np.clip(np.asarray(q, float), nodes[0], nodes[-1])
    j = np.clip(np.searchsorted(nodes, q, side="right") - 1, 0, nodes.size - 2)
    t = (q - nodes[j]) / (nodes[j + 1] - nodes[j])
    out = np.zeros((q.size, nodes.size))
    rows = np.arange(q.size)
    out[rows, j] = 1.0 - t
    out[rows, j + 1] = t
    return out


@dataclass(frozen=True)
class SEDCorrection:
    """The correction on one wavelength grid: call it with continua (N, n_wl) to get log f (N, n_wl)."""
    nodes: np.ndarray           # (n_nodes,) continuum colours, increasing
    amplitudes: np.ndarray      # (n_nodes, n_basis)
    basis: np.ndarray           # (n_basis, n_wl)
    c0_weights: np.ndarray      # (n_wl, 2)

    def __call__(self, continuum: np.ndarray) -> np.ndarray:
        q = continuum_colour(continuum, self.c0_weights)
        return node_weights(q, self.nodes) @ (self.amplitudes @ self.basis)

    @property
    def n_parameters(self) -> int:
        return int(self.amplitudes.size + self.nodes.size)


def forward_c0_weights(operator: np.ndarray) -> np.ndarray:
    """(n_wl, 2): the BP and RP c₀ columns of a forward operator."""
    return np.ascontiguousarray(operator[:, [0, N_COEFF]])


def stored_sed_correction(wavelength: np.ndarray, operator: np.ndarray) -> SEDCorrection:
    """The correction stored in sed_calibration.py on the forward model's grid."""
    from .sed_calibration import AMPLITUDES, NODES
    return SEDCorrection(nodes=np.asarray(NODES, float), amplitudes=np.asarray(AMPLITUDES, float),
                         basis=basis_functions(wavelength), c0_weights=forward_c0_weights(operator))


def fit_half(source_id: np.ndarray) -> np.ndarray:
    """The real sources the correction is fitted on: even HEALPix-12 index (source_id // 2³⁵; the low bits of
    these source_ids are all zero, so source_id itself is always even); the odd ones are held out."""
    return (np.asarray(source_id, np.int64) >> 35) % 2 == 0


# --- the fit -------------------------------------------------------------------------------------------------

#: Columns of the 110 in the problem: c₀…c_MODEL_ORDERS of BP, then of RP; which shape columns are held.
_COLS = np.r_[0:MODEL_ORDERS + 1, N_COEFF:N_COEFF + MODEL_ORDERS + 1]
_ZERO = (0, MODEL_ORDERS + 1)                                # positions of BP c₀ and RP c₀ within _COLS
_SHAPE = np.r_[1:MODEL_ORDERS + 1, MODEL_ORDERS + 2:2 * MODEL_ORDERS + 2]
_HELD = np.tile(np.arange(1, MODEL_ORDERS + 1) > FIT_ORDERS, 2)


def _ratios(c: np.ndarray) -> np.ndarray:
    """(N, 2·MODEL_ORDERS) c_k/c₀ per band from columns _COLS."""
    return np.concatenate([c[:, 1:_ZERO[1]] / c[:, :1], c[:, _ZERO[1] + 1:] / c[:, _ZERO[1]:_ZERO[1] + 1]], axis=1)


def _colour(c: np.ndarray) -> np.ndarray:
    return np.log10(c[:, _ZERO[1]] / c[:, 0])


def real_targets(real_c: np.ndarray, real_g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour-bin edges (FIT_BINS + 1) at the real octiles, and per bin the real median c_k/c₀ and median |c_k|/c₀
    (n_bins, 2·MODEL_ORDERS) of the sources with both bands in FIT_G_RANGE."""
    c = np.asarray(real_c, float)[:, _COLS]
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = _colour(c)
        r = _ratios(c)
    ok = np.isfinite(colour) & np.all(np.isfinite(r), axis=1) & (real_g > FIT_G_RANGE[0]) & (real_g < FIT_G_RANGE[1])
    edges = np.quantile(colour[ok], np.linspace(0.0, 1.0, FIT_BINS + 1))
    target, scale = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = ok & (colour >= lo) & (colour <= hi)
        target.append(np.median(r[m], axis=0))
        scale.append(np.maximum(10.0 ** np.median(np.log10(np.abs(r[m])), axis=0), SCALE_FLOOR))
    return edges, np.array(target), np.array(scale)


def _penalty(n_nodes: int, n_basis: int) -> np.ndarray:
    """Rows of the Tikhonov penalty on a (flattened node-major): size, curvature along λ, change across q."""
    eye_n, eye_b = np.eye(n_nodes), np.eye(n_basis)
    d2 = np.diff(eye_b, 2, axis=0)
    d1 = np.diff(eye_n, 1, axis=0)
    return np.vstack([np.sqrt(RIDGE) * np.eye(n_nodes * n_basis),
                      np.sqrt(SMOOTH_LAMBDA) * np.kron(eye_n, d2),
                      np.sqrt(SMOOTH_COLOUR) * np.kron(d1, eye_b)])


def fit_sed_correction(real_c: np.ndarray, real_g: np.ndarray, seed: int = CORRECTION_SEED,
                       n_stars: int = CORRECTION_STARS) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, amplitudes) of the correction fitted on the given real sources (see the module docstring)."""
    from .instrument import FORWARD_GRID, forward_operator
    from .populations import draw_stars
    from .sed import SEDModel
    op = forward_operator(FORWARD_GRID)
    model = SEDModel(FORWARD_GRID, through_lsf=False)
    s = draw_stars(np.random.default_rng(seed), n_stars)
    sed0 = model(s.teff, s.logg, s.m_h, s.alpha_m, s.ebv, s.carbon)
    q = continuum_colour(model.continuum(s.teff, s.m_h, s.ebv), forward_c0_weights(op))
    edges, target, scale = real_targets(real_c, real_g)
    problem = _Problem(sed0, op[:, _COLS], basis_functions(FORWARD_GRID), edges, target, scale)
    problem.hold_uncorrected()
    nodes = _colour_nodes(q, problem.colour0, edges)
    problem.h = node_weights(q, nodes)
    a = np.zeros(nodes.size * problem.basis.shape[0])
    penalty = _penalty(nodes.size, problem.basis.shape[0])
    damping = DAMPING
    resid, jac = problem.linearise(a)
    cost = _cost(resid, penalty, a)
    for _ in range(ITERATIONS):       # Levenberg–Marquardt: a step is kept only if it lowers the cost
        lhs = np.vstack([jac, penalty, np.sqrt(damping) * np.eye(a.size)])
        rhs = -np.concatenate([resid, penalty @ a, np.zeros(a.size)])
        trial = a + np.linalg.lstsq(lhs, rhs, rcond=None)[0]
        t_resid, t_jac = problem.linearise(trial)
        t_cost = _cost(t_resid, penalty, trial)
        if t_cost < cost:
            a, resid, jac, cost, damping = trial, t_resid, t_jac, t_cost, damping / 3.0
        else:
            damping *= 4.0
    return nodes, a.reshape(nodes.size, -1)


#: Initial Levenberg–Marquardt damping (in units of the residuals, which read roughly in ln of |c_k|).
DAMPING = 1.0


def _cost(resid: np.ndarray, penalty: np.ndarray, a: np.ndarray) -> float:
    return float(resid @ resid + (penalty @ a) @ (penalty @ a))


class _Problem:
    """The misfit of simulated vs real median c_k/c₀ per real colour bin, and its Jacobian in the amplitudes."""

    def __init__(self, sed0, op_cols, basis, edges, target, scale):
        self.sed0, self.op_cols, self.basis = sed0, op_cols, basis
        self.edges, self.target, self.scale = edges, target, scale
        self.colour0 = _colour(sed0 @ op_cols)
        self.h = np.zeros((sed0.shape[0], 0))

    def hold_uncorrected(self) -> None:
        """Targets of the held orders (_HELD): the uncorrected simulated per-bin means, weighted HELD_WEIGHT."""
        r0 = _ratios(self.sed0 @ self.op_cols)
        for b, (lo, hi) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            m = (self.colour0 >= lo) & (self.colour0 <= hi)
            if m.any():
                self.target[b, _HELD] = r0[m][:, _HELD].mean(axis=0)
        self.scale[:, _HELD] /= HELD_WEIGHT
    def linearise(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_nodes = self.h.shape[1]
        sed = self.sed0 * np.exp(self.h @ (a.reshape(n_nodes, -1) @ self.basis))
        c = sed @ self.op_cols
        d = np.stack([(sed * bump) @ self.op_cols for bump in self.basis], axis=1)   # (N, n_basis, n_cols)
        r, colour = _ratios(c), _colour(c)
        band0 = np.where(np.arange(2 * MODEL_ORDERS) < MODEL_ORDERS, _ZERO[0], _ZERO[1])
        grad_r = (d[:, :, _SHAPE] - r[:, None, :] * d[:, :, band0]) / c[:, None, band0]
        grad_col = (d[:, :, _ZERO[1]] / c[:, None, _ZERO[1]] - d[:, :, 0] / c[:, None, 0]) / np.log(10.0)
        rows, resid = [], []
        for b, (lo, hi) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            m = (self.colour0 >= lo) & (self.colour0 <= hi)
            n = int(m.sum())
            if n < 10:
                continue
            resid += [(np.mean(r[m], axis=0) - self.target[b]) / self.scale[b],
                      [COLOUR_WEIGHT * np.mean(colour[m] - self.colour0[m])]]
            rows += [np.einsum("in,ijk->knj", self.h[m], grad_r[m]).reshape(2 * MODEL_ORDERS, -1) / n
                     / self.scale[b][:, None],
                     COLOUR_WEIGHT * np.einsum("in,ij->nj", self.h[m], grad_col[m]).reshape(1, -1) / n]
        return np.concatenate([np.atleast_1d(v) for v in resid]), np.vstack(rows)


def _colour_nodes(q: np.ndarray, colour: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """One node per real colour bin: the median continuum colour of the simulated stars whose uncorrected colour
    falls in it (bins with < 10 of them get none), rounded to 1e-4 and kept strictly increasing."""
    nodes = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (colour >= lo) & (colour <= hi)
        if m.sum() >= 10:
            nodes.append(round(float(np.median(q[m])), 4))
    nodes_arr = np.unique(nodes)
    if nodes_arr.size < 2:
        raise ValueError("too few colour bins hold simulated stars to place the correction's nodes")
    return nodes_arr


def write_sed_calibration(nodes: np.ndarray, amplitudes: np.ndarray, target: Path, source: str) -> None:
    header = textwrap.wrap("Empirical SED correction of the forward model (sed_correction.fit_sed_correction): "
                           f"{amplitudes.size} amplitudes on {nodes.size} continuum-colour nodes × "
                           f"{amplitudes.shape[1]} wavelength bumps, fitted on {source}.", 110)
    lines = ['"""' + header[0], *header[1:],
             'Generated by `python -m simulator.calibrate --sed`; do not edit by hand."""',
             "NODES = [" + ", ".join(f"{v:.4f}" for v in nodes) + "]", "AMPLITUDES = ["]
    for row in amplitudes:
        values = [f"{float(v):.5f}" for v in row]
        chunks = [", ".join(values[i:i + 11]) for i in range(0, len(values), 11)]
        lines.append("    [\n        " + ",\n        ".join(chunks) + "\n    ],")
    lines.append("]")
    target.write_text("\n".join(lines) + "\n")


def real_fit_sources(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coefficients, GaiaXPy synthetic G, fit-half mask) of the real sources in a flat XP FITS table."""
    from astropy.table import Table

    from .noise import read_flat_real_sources
    from .xp_basis import xp_basis
    c, _ = read_flat_real_sources(path)
    source_id = np.asarray(Table.read(path)["source_id"], np.int64)
    g = xp_basis().synthetic_mags(c)[:, 0]
    return c, g, fit_half(source_id)


def fitted_correction(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, amplitudes) fitted on the fit half of the real sources in ``path``, rounded as stored."""
    c, g, half = real_fit_sources(path)
    nodes, amplitudes = fit_sed_correction(c[half], g[half])
    return np.round(nodes, 4), np.round(amplitudes, 5)


def refit_sed_calibration(path: Path, target: Path, name: str) -> int:
    """Refit on the real sources in ``path`` and write ``target``; returns the number of free parameters."""
    nodes, amplitudes = fitted_correction(path)
    write_sed_calibration(nodes, amplitudes, target, f"the even-HEALPix half of the real Gaia DR3 sources in {name}")
    return int(nodes.size + amplitudes.size)
