"""Per-star XP covariances in the model's standardised units: the one place that builds them, factorises them
(batched Cholesky) and evaluates the Gaussian likelihood and χ² with them (science.md §4 and §7).

Whitening by the errors turns every factorisation into one of a correlation-like matrix. With e a band's
standardised errors, R its archive correlation matrix (unit-free, so standardisation leaves it unchanged) and
ŝ the learned scatter:  Σ = D·R·D with D = diag(e), and  Σ + diag(ŝ²) = D·(R + diag(r))·D,  r = ŝ²/e².
So with w = (x − x̂)/e:  δᵀ(Σ + S²)⁻¹δ = wᵀ(R + diag r)⁻¹w  and  log det(Σ + S²) = log det(R + diag r) + 2Σ log e.

Why it is shaped this way (speed): R is fixed per star but r changes every training step, and R + diag(r) is
not diagonalised by R's eigenvectors unless r is constant, so nothing short of one Cholesky per star, band and
step is exact. The costs are kept to that: both bands go through one batched call; on the CPU that is the
compiled kernel shared/_wchi2.c (eight stars factorised side by side, in float64, read straight from the stored
strict lower triangles: ~5x LAPACK's one-small-matrix-per-call speed here), elsewhere (CUDA) torch.linalg's
batched solver on matrices built per batch. The gradient needs only C⁻¹w and diag(C⁻¹) (a custom backward
instead of differentiating through the factorisation, which costs ~3 more factorisations' worth).
A band without usable correlations gets R = I, where the full likelihood IS the diagonal one.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from shared.xp import N_COEFF, N_CORR, TRIL

try:
    from shared._wchi2 import quadratic_forms as _c_quadratic_forms
    from shared._wchi2 import whitened_nll as _c_whitened_nll
except ImportError:          # no C compiler at install time: the torch.linalg path, same numbers, ~5x slower
    _c_quadratic_forms = _c_whitened_nll = None

COMPILED = _c_quadratic_forms is not None

_LOWER = torch.as_tensor(TRIL[0] * N_COEFF + TRIL[1])
_DIAG = torch.arange(N_COEFF) * (N_COEFF + 1)
#: rows per batched factorisation: bounds the (rows, 55, 55) work matrices (~12 kB each in float32)
CHUNK_ROWS = 4096
#: smallest eigenvalue a correlation matrix needs for the full likelihood (κ ≤ 55/MIN_EIGENVALUE keeps the
#: float32 factorisations of the torch path usable); the real DR3 records seen have 0.016–0.08
MIN_EIGENVALUE = 1e-3


def correlation_matrices(flat: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """(M, 55, 55) matrices from (M, 1485) strict lower triangles: lower triangle and unit diagonal filled,
    upper triangle zero (LAPACK's lower Cholesky never reads it)."""
    dtype = dtype or flat.dtype
    r = torch.zeros((flat.shape[0], N_COEFF * N_COEFF), dtype=dtype, device=flat.device)
    r[:, _LOWER.to(flat.device)] = flat.to(dtype)
    r[:, _DIAG.to(flat.device)] = 1.0
    return r.view(-1, N_COEFF, N_COEFF)


def usable_correlations(flat: np.ndarray, min_eigenvalue: float = MIN_EIGENVALUE) -> np.ndarray:
    """(M,) bool: the row's correlations are finite and R − min_eigenvalue·I is positive definite (so R's
    smallest eigenvalue exceeds it). One float64 factorisation per row, in chunks."""
    flat = np.asarray(flat)
    if flat.ndim != 2 or flat.shape[1] != N_CORR:
        raise ValueError(f"correlations must be (M, {N_CORR}), got {flat.shape}")
    ok = np.isfinite(flat).all(axis=1)
    for i in range(0, len(flat), CHUNK_ROWS):
        rows = np.flatnonzero(ok[i:i + CHUNK_ROWS]) + i
        if rows.size:
            r = correlation_matrices(torch.as_tensor(flat[rows]), torch.float64)
            r.diagonal(dim1=1, dim2=2).sub_(min_eigenvalue)
            ok[rows] = (torch.linalg.cholesky_ex(r)[1] == 0).numpy()
    return ok


def _whitened_nll_torch(w: Tensor, r: Tensor, flat: Tensor, grad: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    c = correlation_matrices(flat, w.dtype)
    c.diagonal(dim1=1, dim2=2).add_(r)
    chol, info = torch.linalg.cholesky_ex(c)
    alpha = torch.cholesky_solve(w.unsqueeze(-1), chol).squeeze(-1)
    logdet = 2.0 * torch.log(chol.diagonal(dim1=1, dim2=2)).sum(-1)
    out = 0.5 * ((w * alpha).sum(-1) + logdet)
    out = torch.where(info == 0, out, torch.full_like(out, float("nan")))
    return out, alpha, torch.cholesky_inverse(chol).diagonal(dim1=1, dim2=2) if grad else None


@torch.compiler.disable       # a C call on numpy buffers: torch.compile runs it as it is (no trace, no warning)
def _whitened_nll_compiled(w: Tensor, r: Tensor, flat: Tensor, grad: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """The same by the compiled kernel, in float64, results in w's dtype."""
    def f64(t: Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().numpy(), dtype=np.float64)

    def back(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(w.dtype)

    m = w.shape[0]
    nll, alpha = np.empty(m), np.empty((m, N_COEFF))
    cinv = np.empty((m, N_COEFF)) if grad else None
    _c_whitened_nll(np.ascontiguousarray(flat.numpy()), f64(w), f64(r), nll, alpha, cinv)
    return back(nll), back(alpha), None if cinv is None else back(cinv)


class _WhitenedNLL(torch.autograd.Function):
    """½·(wᵀC⁻¹w + log det C) per row, C = R + diag(r). Gradients: ∂/∂w = C⁻¹w, ∂/∂r = ½(diag C⁻¹ − (C⁻¹w)²).
    A row whose C is not positive definite gives NaN (the training engine then stops with a clear error).
    On the CPU with the stored float32 triangles: the compiled kernel (float64 inside, ~5x torch.linalg's
    float32 per-matrix calls); elsewhere (CUDA) torch.linalg's batched solver."""

    @staticmethod
    def forward(ctx, w: Tensor, r: Tensor, flat: Tensor) -> Tensor:
        grad = ctx.needs_input_grad[1]
        use_c = COMPILED and w.device.type == "cpu" and flat.dtype == torch.float32
        out, alpha, c_inv_diag = (_whitened_nll_compiled if use_c else _whitened_nll_torch)(w, r, flat, grad)
        ctx.save_for_backward(alpha, c_inv_diag)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        alpha, c_inv_diag = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        grad_w = g * alpha if ctx.needs_input_grad[0] else None
        grad_r = g * 0.5 * (c_inv_diag - alpha.square()) if ctx.needs_input_grad[1] else None
        return grad_w, grad_r, None


def _bands_as_rows(a: Tensor) -> Tensor:
    """(N, 110) → (2N, 55): BP rows then RP rows, so both bands share one batched factorisation."""
    return torch.cat([a[:, :N_COEFF], a[:, N_COEFF:]])


def gaussian_nll_full(x: Tensor, x_err: Tensor, xhat: Tensor, scatter: Tensor, correlations: Tensor) -> Tensor:
    """Per-star −log N(x | x̂, Σ + diag(ŝ²)) summed over both bands, ½ln2π per coefficient dropped (the same
    convention as shared.model.gaussian_nll, which it equals where the correlations are zero).
    x, x_err, xhat, scatter: (N, 110); correlations: (N, 2, 1485) strict lower triangles per band, zeros for a
    band without usable correlations."""
    n = x.shape[0]
    e = _bands_as_rows(x_err)
    w = _bands_as_rows(x - xhat) / e
    r = (_bands_as_rows(scatter) / e).square()
    flat = torch.cat([correlations[:, 0], correlations[:, 1]])
    parts = [_WhitenedNLL.apply(w[i:i + CHUNK_ROWS], r[i:i + CHUNK_ROWS], flat[i:i + CHUNK_ROWS])
             for i in range(0, 2 * n, CHUNK_ROWS)]
    per_band = torch.cat(parts) + torch.log(e).sum(-1)
    return per_band[:n] + per_band[n:]


# ---------------------------------------------------------------------------------------------------------
# χ² (inference and analysis)

def _quadratic_form(c: Tensor, w: Tensor) -> Tensor:
    chol, info = torch.linalg.cholesky_ex(c)
    q = torch.linalg.solve_triangular(chol, w, upper=False).squeeze(-1).square().sum(-1)
    return torch.where((info == 0) & torch.isfinite(q), q, torch.full_like(q, float("nan")))


def _quadratic_forms_torch(w: Tensor, flat: Tensor, r: Tensor | None, dtype: torch.dtype) -> list[Tensor]:
    """[wᵀR⁻¹w] and, when r is given, wᵀ(R + diag r)⁻¹w per row, by torch.linalg in ``dtype``."""
    c = correlation_matrices(flat, dtype)
    w = w.to(dtype).unsqueeze(-1)
    out = [_quadratic_form(c, w)]
    if r is not None:
        c.diagonal(dim1=1, dim2=2).add_(r.to(dtype))
        out.append(_quadratic_form(c, w))
    return out


def _quadratic_forms_compiled(w: Tensor, flat: Tensor, r: Tensor | None) -> list[Tensor]:
    """The same in float64 by the compiled kernel (shared/_wchi2.c), eight rows factorised side by side."""
    f = np.ascontiguousarray(flat.numpy())
    wn = np.ascontiguousarray(w.numpy(), dtype=np.float64)
    out = []
    for extra in (None,) if r is None else (None, r):
        q = np.empty(len(wn))
        _c_quadratic_forms(f, wn, None if extra is None else np.ascontiguousarray(extra.numpy(), dtype=np.float64), q)
        out.append(torch.from_numpy(q))
    return out


def _quadratic_forms(w: Tensor, flat: Tensor, r: Tensor | None, dtype: torch.dtype) -> list[Tensor]:
    # the kernel reads the triangles as stored (float32); anything else goes through torch.linalg unrounded
    if COMPILED and dtype == torch.float64 and w.device.type == "cpu" and flat.dtype == torch.float32:
        return _quadratic_forms_compiled(w, flat, r)
    return _quadratic_forms_torch(w, flat, r, dtype)


def whitened_chi2(w: Tensor, flat: Tensor, r: Tensor | None = None, dtype: torch.dtype = torch.float64,
                  threads: int | None = None) -> list[Tensor]:
    """χ² = wᵀR⁻¹w per row (and wᵀ(R + diag r)⁻¹w when r is given) for whitened residuals w (M, 55) and
    flat correlations (M, 1485); NaN where the matrix is not positive definite or an input is not finite.
    On the CPU, chunks are factorised on ``threads`` threads (default: torch's intra-op count) — torch's
    batched Cholesky loops over the batch on one thread, and LAPACK releases the GIL."""
    threads = torch.get_num_threads() if threads is None else threads
    chunks = [(w[i:i + CHUNK_ROWS], flat[i:i + CHUNK_ROWS], None if r is None else r[i:i + CHUNK_ROWS])
              for i in range(0, w.shape[0], CHUNK_ROWS)]
    if not chunks:
        return [w.new_zeros(0, dtype=dtype)] * (1 if r is None else 2)
    if threads > 1 and len(chunks) == 1 and w.device.type == "cpu" and w.shape[0] >= 512:
        half = (w.shape[0] + 1) // 2     # one batch: still split it across the threads
        w0, flat0, r0 = chunks[0]
        chunks = [(w0[s], flat0[s], None if r0 is None else r0[s]) for s in (slice(0, half), slice(half, None))]

    def run(chunk: tuple[Tensor, Tensor, Tensor | None]) -> list[Tensor]:
        return _quadratic_forms(*chunk, dtype)

    if threads > 1 and len(chunks) > 1 and w.device.type == "cpu":
        with ThreadPoolExecutor(min(threads, len(chunks))) as pool:
            parts = list(pool.map(run, chunks))
    else:
        parts = [run(ch) for ch in chunks]
    return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]


def chi2_bands(x: Tensor, xhat: Tensor, x_err: Tensor, bp_corr: Tensor, rp_corr: Tensor,
               scatter: Tensor | None = None, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """χ² per band with the full covariance Σ = D·R·D built from x_err (same units as x): keys 'bp', 'rp' and,
    with scatter, 'bp_scatter', 'rp_scatter' for Σ + diag(ŝ²). Inputs (N, 110) and (N, 1485) tensors.
    Residuals are formed in float64 (x̂ − x cancels digits for bright stars); the factorisations run in
    ``dtype``. A star with an error ≤ 0 gets NaN. The bands go through the factorisations one after the other,
    each straight from its own correlations (joining them first would copy 12 kB a star: a fifth of the time)."""
    out = {}
    for band, sl, corr in (("bp", slice(0, N_COEFF), bp_corr), ("rp", slice(N_COEFF, 2 * N_COEFF), rp_corr)):
        e = x_err[:, sl].to(torch.float64)
        e = torch.where(e > 0, e, torch.full_like(e, float("nan")))
        w = (xhat[:, sl].to(torch.float64) - x[:, sl].to(torch.float64)) / e
        r = None if scatter is None else torch.nan_to_num((scatter[:, sl].to(torch.float64) / e).square(), nan=0.0)
        qs = whitened_chi2(w, corr, r, dtype)
        out[band] = qs[0]
        if scatter is not None:
            out[f"{band}_scatter"] = qs[1]
    return out
