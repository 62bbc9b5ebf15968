"""The inference engine: run a trained model over any number of stars in bounded memory (docs/science.md §6–7).

Per star it gives the posterior mean μ and σ = exp(½ log σ²) (sVAE only), the reconstruction x̂ and the
scatter ŝ at z = μ, and — when the observed spectrum and its errors are supplied — the NLL at z = μ, the RMS
z-score with and without the scatter, and χ²/dof per band with the full covariance (NaN, with the reason
recorded, when no correlations are given): keys chi2_bp, chi2_rp (δᵀΣ⁻¹δ), chi2_dof_bp, chi2_dof_rp (÷55), and
the same with '_scatter' for Σ + diag(ŝ²). Sampled reconstructions come only on request and are seeded.
All inputs and outputs are in the model's standardised units (see shared.preprocessing).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, cast

import numpy as np
import torch
from torch import nn

from shared import covariance
from shared.device import resolve_device
from shared.metrics import zscore_rms, zscores
from shared.model import fold_batchnorm, gaussian_nll, kl_divergence
from shared.progress import Progress
from shared.xp import N_COEFF

CHI2_NO_CORRELATIONS = "unavailable: no correlations given"
CHI2_FULL = "full covariance"


TensorPair = tuple[torch.Tensor, torch.Tensor]
Correlations = Mapping[str, "np.ndarray | None"]    # 'bp', 'rp' → (N, 1485) strict lower triangles, or None


def _method(model: nn.Module, name: str) -> Callable[..., TensorPair]:
    """A model method returning two tensors (encode: μ, log σ²; decode: x̂, ŝ), typed: to mypy an nn.Module's
    attributes are tensors or modules."""
    return cast(Callable[..., TensorPair], getattr(model, name))


def _as_tensor(a: Any, dtype: Any, device: torch.device | None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=dtype), device=device)


def _predict(model: nn.Module, x: torch.Tensor | None, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Model outputs at z = μ (sVAE) or for given labels (label baseline)."""
    if hasattr(model, "encode"):
        mu, log_var = _method(model, "encode")(x)
        xhat, scatter = _method(model, "decode")(mu)
        return {"latent_mu": mu, "latent_log_var": log_var, "xhat": xhat, "scatter": scatter}
    if labels is None:
        raise ValueError(f"{type(model).__name__} needs labels for inference")
    xhat, scatter = model(labels)
    return {"xhat": xhat, "scatter": scatter}


def _chi2(x: np.ndarray, x_err: np.ndarray, xhat: torch.Tensor, scatter: torch.Tensor,
          correlations: Correlations, device: torch.device) -> dict[str, np.ndarray]:
    """χ² per band on the model's device, in float64 (shared.covariance). float32 factorisations would be ~1.3×
    faster, but their error grows with the condition number (1e-2 relative at κ ~ 1e5), so χ² stays exact."""
    flat = {b: _as_tensor(correlations[b], np.float32, device) for b in ("bp", "rp")}
    with torch.inference_mode():
        chi = covariance.chi2_bands(_as_tensor(x, np.float64, device), xhat, _as_tensor(x_err, np.float64, device),
                                    flat["bp"], flat["rp"], scatter, dtype=torch.float64)
    return {k: v.double().cpu().numpy() for k, v in chi.items()}


def infer_batch(model: nn.Module, x: np.ndarray | None, x_err: np.ndarray | None = None, *,
                labels: np.ndarray | None = None, correlations: Correlations | None = None,
                draws: int = 0, generator: torch.Generator | None = None, device: torch.device | None = None,
                include_reconstructions: bool = True) -> dict[str, Any]:
    """One batch: a dict of numpy arrays (float32 model outputs, float64 metrics). See the module doc."""
    device = device or next(model.parameters()).device
    xt, et, lt = (None if a is None else _as_tensor(a, np.float32, device) for a in (x, x_err, labels))
    out: dict[str, Any] = {}
    with torch.inference_mode():
        p = _predict(model, xt, lt)
        n = p["xhat"].shape[0]
        if "latent_mu" in p:
            out["latent_mu"] = p["latent_mu"].cpu().numpy()
            out["latent_sigma"] = torch.exp(0.5 * p["latent_log_var"]).cpu().numpy()
        if et is not None and xt is not None:
            out["nll"] = gaussian_nll(xt, et, p["xhat"], p["scatter"]).double().cpu().numpy()
            if "latent_mu" in p:
                out["kl"] = kl_divergence(p["latent_mu"], p["latent_log_var"]).double().cpu().numpy()
            out["zscore_rms"] = zscore_rms(zscores(xt, p["xhat"], et)).double().cpu().numpy()
            out["zscore_rms_scatter"] = zscore_rms(zscores(xt, p["xhat"], et, p["scatter"])).double().cpu().numpy()
        if draws and "latent_mu" in p:
            sig = torch.exp(0.5 * p["latent_log_var"])
            eps = torch.randn((draws,) + tuple(sig.shape), generator=generator, device=device, dtype=sig.dtype)
            z = (p["latent_mu"] + sig * eps).reshape(draws * n, -1)
            xs, ss = _method(model, "decode")(z)
            out["xhat_draws"] = xs.reshape(draws, n, -1).transpose(0, 1).cpu().numpy()
            out["scatter_draws"] = ss.reshape(draws, n, -1).transpose(0, 1).cpu().numpy()
        p_xhat, p_scatter = p["xhat"], p["scatter"]
        xhat = p_xhat.cpu().numpy()
        scatter = p_scatter.cpu().numpy()
    if include_reconstructions:
        out["xhat"], out["scatter"] = xhat, scatter
    if x is not None and x_err is not None:
        if correlations and all(correlations.get(b) is not None for b in ("bp", "rp")):
            chi = _chi2(x, x_err, p_xhat, p_scatter, correlations, device)
            for b in ("bp", "rp"):
                out[f"chi2_dof_{b}"], out[f"chi2_dof_{b}_scatter"] = chi[b] / N_COEFF, chi[f"{b}_scatter"] / N_COEFF
            out["chi2_method"] = CHI2_FULL
        else:
            for b in ("bp", "rp"):
                out[f"chi2_dof_{b}"] = out[f"chi2_dof_{b}_scatter"] = np.full(len(xhat), np.nan)
            out["chi2_method"] = CHI2_NO_CORRELATIONS
        for b in ("bp", "rp"):   # the plain χ² too (dof = 55 per band)
            out[f"chi2_{b}"] = out[f"chi2_dof_{b}"] * N_COEFF
            out[f"chi2_{b}_scatter"] = out[f"chi2_dof_{b}_scatter"] * N_COEFF
    return out


def infer(model: nn.Module, x: np.ndarray | None, x_err: np.ndarray | None = None, *,
          labels: np.ndarray | None = None, correlations: Correlations | None = None,
          batch_size: int = 65536, draws: int = 0, seed: int | None = None, device: str | torch.device | None = None,
          include_reconstructions: bool = True, fold_bn: bool = False,
          progress: Progress | None = None) -> Iterator[dict[str, Any]]:
    """Stream results over row-aligned arrays (numpy, memmap or h5py datasets: only one batch is read at a
    time). Yields one dict per batch with 'start' (first row) plus the arrays of `infer_batch`. With ``fold_bn``
    the batch norms are folded into the linear layers of a copy of the model: ~1.3× faster, outputs differ
    from the unfolded model by float32 rounding (≲2e-5 of a row's scale on the published weights, vs ≲1e-5
    unfolded, hence off by default)."""
    first = x if x is not None else labels
    if first is None:
        raise ValueError("give x (sVAE) or labels (label baseline)")
    n = len(first)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model = fold_batchnorm(model).to(dev) if fold_bn else model.to(dev).eval()
    gen = torch.Generator(device=dev).manual_seed(seed if seed is not None else 0) if draws else None
    if draws and seed is None:
        raise ValueError("sampled draws must be seeded: pass seed")
    def sl(a: Any, i: int) -> np.ndarray | None:
        return None if a is None else np.asarray(a[i:i + batch_size])

    for i in range(0, n, batch_size):
        corr = None if correlations is None else {b: sl(c, i) for b, c in correlations.items()}
        res = infer_batch(model, sl(x, i), sl(x_err, i), labels=sl(labels, i), correlations=corr, draws=draws,
                          generator=gen, device=dev, include_reconstructions=include_reconstructions)
        res["start"] = i
        if progress is not None:
            progress(min(i + batch_size, n), n, "inference")
        yield res


def infer_stream(model: nn.Module, chunks: Iterable[Mapping[str, np.ndarray]], **kwargs) -> Iterator[dict[str, Any]]:
    """Stream over an iterable of chunk dicts with keys 'x', optional 'x_err', 'labels', 'bp_corr', 'rp_corr'
    (any length each). Yields one result dict per chunk with 'chunk' (its ordinal) and 'start' (running row)."""
    row = 0
    for k, chunk in enumerate(chunks):
        corr = None
        if chunk.get("bp_corr") is not None or chunk.get("rp_corr") is not None:
            corr = {"bp": chunk.get("bp_corr"), "rp": chunk.get("rp_corr")}
        parts = list(infer(model, chunk.get("x"), chunk.get("x_err"), labels=chunk.get("labels"),
                           correlations=corr, **kwargs))
        merged = concat_results(parts)
        merged["chunk"], merged["start"] = k, row
        row += len(next(iter(v for v in merged.values() if isinstance(v, np.ndarray))))
        yield merged


def concat_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Join per-batch result dicts (arrays concatenated; the chi2 method kept if all agree, else 'mixed')."""
    if not parts:
        return {}
    out: dict[str, Any] = {}
    for key, val in parts[0].items():
        if isinstance(val, np.ndarray):
            out[key] = np.concatenate([p[key] for p in parts])
        elif key == "chi2_method":
            methods = {p[key] for p in parts}
            out[key] = methods.pop() if len(methods) == 1 else "mixed"
        else:
            out[key] = val
    return out


def infer_all(model: nn.Module, x: np.ndarray | None, x_err: np.ndarray | None = None, **kwargs) -> dict[str, Any]:
    """Everything at once (for arrays that fit in memory twice over)."""
    return concat_results(list(infer(model, x, x_err, **kwargs)))
