"""The stellar-label-dependent comparison model (docs/science.md §8).

An MLP maps labels (Teff, log g, [M/H], [α/M], optionally a reddening proxy) to the 110 standardised XP
coefficients, and a second MLP of the same shape maps them to the intrinsic scatter ŝ ∈ (0, 1) (Sigmoid).
It is trained with the sVAE's NLL and no KL, by the same engine (shared.training), on stars with good labels.
The label standardisation (fitted on the training split) is stored in the model as buffers, so the model
takes labels in their natural units.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from shared import defaults as D
from shared.model import LatentDecoder, gaussian_nll
from shared.preprocessing import Normalisation
from shared.progress import Progress
from shared.training import TrainConfig, TrainResult, init_seeded, prepare_rows, train_model


@dataclass(frozen=True)
class BaselineConfig:
    """``hidden`` are the widths from the labels towards the spectrum."""
    label_names: tuple[str, ...] = D.BASELINE_LABELS
    output_dim: int = 110
    hidden: tuple[int, ...] = (32, 64, 128, 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.label_names or not self.hidden or self.output_dim < 1:
            raise ValueError(f"invalid BaselineConfig: {self}")

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label_names"], d["hidden"] = list(self.label_names), list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BaselineConfig":
        base = cls()
        return cls(label_names=tuple(d.get("label_names", base.label_names)),
                   output_dim=int(d.get("output_dim", base.output_dim)), hidden=tuple(d.get("hidden", base.hidden)))


class LabelBaseline(nn.Module):
    """labels (natural units) → (x̂, ŝ) in the standardised coefficient units."""
    label_mu: Tensor         # buffers: the label standardisation, saved with the weights
    label_sig: Tensor

    def __init__(self, config: BaselineConfig | None = None) -> None:
        super().__init__()
        self.config = config or BaselineConfig()
        c = self.config
        # LatentDecoder walks its hidden widths in reverse; give them reversed so they run labels → spectrum.
        self.mean = LatentDecoder(c.n_labels, c.hidden[::-1], c.output_dim, sigmoid=False)
        self.scatter = LatentDecoder(c.n_labels, c.hidden[::-1], c.output_dim, sigmoid=True)
        self.register_buffer("label_mu", torch.zeros(c.n_labels))
        self.register_buffer("label_sig", torch.ones(c.n_labels))

    def set_label_normalisation(self, mu: np.ndarray, sig: np.ndarray) -> None:
        self.label_mu.copy_(torch.as_tensor(np.asarray(mu, dtype=np.float32)))
        self.label_sig.copy_(torch.as_tensor(np.asarray(sig, dtype=np.float32)))

    def forward(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        u = (labels - self.label_mu) / self.label_sig
        return self.mean(u), self.scatter(u)

    def decode(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        return self(labels)

    # --- interface of the training engine ---
    def make_noise(self, batch_size: int, generator: torch.Generator | None) -> None:
        return None  # deterministic model: nothing to draw

    def batch_loss(self, batch: tuple[Tensor, ...], noise: None) -> tuple[Tensor, Tensor, Tensor]:
        labels, x, x_err = batch
        xhat, scatter = self(labels)
        nll = gaussian_nll(x, x_err, xhat, scatter).mean()
        return nll, nll, torch.zeros_like(nll)


def fit_label_baseline(labels: np.ndarray, x: np.ndarray, x_err: np.ndarray, config: BaselineConfig | None = None,
                       train_config: TrainConfig | None = None,
                       callback: Callable[[dict[str, float]], None] | None = None,
                       checkpoint_path: str | Path | None = None, resume: bool = True,
                       should_stop: Callable[[], bool] | None = None, progress: Progress | None = None) -> TrainResult:
    """Train the label baseline on labels (N, n_labels) and G-flux-normalised x, x_err (N, 110).

    Select good-label stars before calling. Rows with a non-finite label, coefficient or error are excluded
    and reported; the coefficient normalisation and the label standardisation are fitted on the training
    split only.
    """
    config = config or BaselineConfig()
    cfg = train_config or TrainConfig()
    if cfg.likelihood != "diagonal":
        raise ValueError("the label baseline trains with the diagonal likelihood only (its published form)")
    labels = np.asarray(labels, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    x_err = np.asarray(x_err, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != config.n_labels:
        raise ValueError(f"labels must be (N, {config.n_labels}) for {config.label_names}, got {labels.shape}")
    if x.shape != x_err.shape or x.shape != (labels.shape[0], config.output_dim):
        raise ValueError(f"x, x_err must be ({labels.shape[0]}, {config.output_dim}); got {x.shape}, {x_err.shape}")
    _, excluded, split = prepare_rows((x, x_err, labels), ("x", "x_err", "labels"), cfg)
    tr = split["train"]
    norm = Normalisation.fit(x[tr])
    label_norm = Normalisation.fit(labels[tr])
    xs, es = norm.apply(x, x_err)
    model = init_seeded(lambda: LabelBaseline(config), cfg.seed)
    model.set_label_normalisation(label_norm.mu, label_norm.sig)
    extra = {"split": split, "normalisation": norm.to_dict(), "label_normalisation": label_norm.to_dict(),
             "kind": "label_baseline", "model_config": config.to_dict()}
    va = split["validation"]
    out = train_model(model, (labels[tr], xs[tr], es[tr]), (labels[va], xs[va], es[va]), cfg, callback=callback,
                      checkpoint_path=checkpoint_path, resume=resume, should_stop=should_stop, progress=progress,
                      extra_state=extra)
    return TrainResult(kind="label_baseline", model=model.cpu().eval(), model_config=config.to_dict(),
                       train_config=cfg, normalisation=norm, split=split, excluded=excluded, history=out["history"],
                       epochs_completed=out["epochs_completed"], stopped=out["stopped"], compiled=out["compiled"],
                       device=out["device"], seconds=out["seconds"],
                       extra={"label_normalisation": label_norm.to_dict()})
