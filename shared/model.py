"""The scatter variational auto-encoder (sVAE) of Laroche & Speagle (docs/science.md §3–4).

The network maps a standardised XP spectrum (110 coefficients) to a 6-dimensional Gaussian posterior and
decodes a latent point into a mean spectrum x̂ and a per-coefficient intrinsic scatter ŝ ∈ (0, 1).
`load_published` reads the authors' released checkpoint into this module.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from shared import defaults as D
from shared.covariance import gaussian_nll_full


@dataclass(frozen=True)
class VAEConfig:
    """Layer widths of the sVAE. ``hidden`` are the encoder widths; the decoders use them reversed."""
    input_dim: int = 110
    latent_dim: int = D.LATENT_DIM
    hidden: tuple[int, ...] = D.HIDDEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.input_dim < 1 or self.latent_dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"invalid VAEConfig: {self}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAEConfig":
        """Accepts this class's own dict and the authors' ``config.json`` (``nn_config`` /
        ``intermediate_layers``)."""
        d = dict(d.get("nn_config", d))
        hidden: Sequence[int] = d["hidden"] if "hidden" in d else d.get("intermediate_layers", cls.hidden)
        return cls(input_dim=int(d.get("input_dim", 110)), latent_dim=int(d.get("latent_dim", D.LATENT_DIM)),
                   hidden=tuple(hidden))


def _block(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(linear=nn.Linear(n_in, n_out), norm=nn.BatchNorm1d(n_out), act=nn.GELU()))


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-only copy in which every Linear → BatchNorm1d block is merged into one Linear using the
    running statistics: W' = W·γ/√(v+ε), b' = (b − m)·γ/√(v+ε) + β. Same outputs up to float32 rounding,
    fewer passes over memory (faster inference)."""
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        lin, bn = getattr(block, "linear", None), getattr(block, "norm", None)
        if isinstance(block, nn.Sequential) and isinstance(lin, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            mean, var = bn.running_mean, bn.running_var
            if mean is None or var is None:      # no running statistics to fold in
                continue
            # in float64, so the merged weights carry one rounding, not three
            scale = bn.weight.double() / torch.sqrt(var.double() + bn.eps)
            lin.weight.copy_(lin.weight.double() * scale[:, None])
            lin.bias.copy_((lin.bias.double() - mean.double()) * scale + bn.bias.double())
            block.norm = nn.Identity()
    return folded


class LatentDecoder(nn.Module):
    """latent → Linear(latent→h[-1]) → blocks along reversed h → Linear(h[0]→output) [→ Sigmoid]."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], output_dim: int, sigmoid: bool) -> None:
        super().__init__()
        rev = hidden[::-1]
        self.input = nn.Linear(latent_dim, rev[0])
        self.blocks = nn.Sequential(*[_block(a, b) for a, b in zip(rev[:-1], rev[1:])])
        self.output = nn.Linear(rev[-1], output_dim)
        self.sigmoid = sigmoid

    def forward(self, z: Tensor) -> Tensor:
        y = self.output(self.blocks(self.input(z)))
        return torch.sigmoid(y) if self.sigmoid else y


def gaussian_nll(x: Tensor, x_err: Tensor, xhat: Tensor, scatter: Tensor) -> Tensor:
    """Per-star NLL with variance w = x_err² + ŝ², summed over coefficients (½ln2π dropped), docs/science.md §4."""
    w = x_err.square() + scatter.square()
    return 0.5 * ((x - xhat).square() / w + torch.log(w)).sum(dim=-1)


def kl_divergence(mu: Tensor, log_var: Tensor) -> Tensor:
    """Per-star KL(N(μ, σ²) ‖ N(0, 1)) summed over latent dimensions."""
    return -0.5 * (1.0 + log_var - mu.square() - log_var.exp()).sum(dim=-1)


class ScatterVAE(nn.Module):
    """The sVAE. ``forward`` returns (x̂, ŝ, μ, log σ²); z is sampled in training mode, z = μ in eval mode
    unless ``sample`` says otherwise."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        c = self.config
        widths = (c.input_dim,) + c.hidden
        self.encoder = nn.Sequential(*[_block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.to_mu = nn.Linear(c.hidden[-1], c.latent_dim)
        self.to_log_var = nn.Linear(c.hidden[-1], c.latent_dim)
        self.decoder = LatentDecoder(c.latent_dim, c.hidden, c.input_dim, sigmoid=False)
        self.scatter = LatentDecoder(c.latent_dim, c.hidden, c.input_dim, sigmoid=True)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_log_var(h)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """x̂(z) and ŝ(z)."""
        return self.decoder(z), self.scatter(z)

    def forward(self, x: Tensor, sample: bool | None = None, generator: torch.Generator | None = None,
                eps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x̂, ŝ, μ, log σ²). z = μ + σ·ε when sampling (default: in training mode), else z = μ.
        ε is drawn with ``generator`` unless given as ``eps``."""
        mu, log_var = self.encode(x)
        if eps is None and (self.training if sample is None else sample):
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu if eps is None else mu + torch.exp(0.5 * log_var) * eps
        xhat, scatter = self.decode(z)
        return xhat, scatter, mu, log_var

    def loss(self, x: Tensor, x_err: Tensor, sample: bool | None = None,
             generator: torch.Generator | None = None, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Per-star (nll, kl), each of shape (N,). The training objective is mean(nll + kl) (β = 1)."""
        xhat, scatter, mu, log_var = self(x, sample=sample, generator=generator, eps=eps)
        return gaussian_nll(x, x_err, xhat, scatter), kl_divergence(mu, log_var)

    # --- interface of the training engine (shared.training) ---
    def make_noise(self, batch_size: int, generator: torch.Generator | None) -> Tensor:
        """ε for one batch, drawn outside the (possibly compiled) loss so the graph stays free of RNG."""
        p = self.to_mu.weight
        return torch.randn((batch_size, self.config.latent_dim), generator=generator, device=p.device, dtype=p.dtype)

    def batch_loss(self, batch: tuple[Tensor, ...], noise: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """batch = (x, x_err) for the diagonal likelihood, or (x, x_err, correlations (N, 2, 1485)) for the full
        covariance one (shared.covariance) → batch means (loss, nll, kl); z = μ + σ·noise (z = μ when noise is
        None)."""
        x, x_err, *corr = batch
        xhat, scatter, mu, log_var = self(x, sample=False, eps=noise)
        nll = gaussian_nll_full(x, x_err, xhat, scatter, corr[0]) if corr else gaussian_nll(x, x_err, xhat, scatter)
        nll, kl = nll.mean(), kl_divergence(mu, log_var).mean()
        return nll + kl, nll, kl

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------------
# The authors' release (docs/data-formats.md §5): keys like encoder.0.0.weight, mu.weight, decoder.5.0.weight.

def published_key_map(config: VAEConfig) -> dict[str, str]:
    """Map each module prefix of the authors' state dict to this module's prefix."""
    n_enc, n_dec_blocks = len(config.hidden), len(config.hidden) - 1
    out: dict[str, str] = {"mu.": "to_mu.", "log_var.": "to_log_var."}
    for i in range(n_enc):
        out[f"encoder.{i}.0."] = f"encoder.{i}.linear."
        out[f"encoder.{i}.1."] = f"encoder.{i}.norm."
    for head in ("decoder", "scatter"):
        out[f"{head}.0."] = f"{head}.input."
        for k in range(1, n_dec_blocks + 1):
            out[f"{head}.{k}.0."] = f"{head}.blocks.{k - 1}.linear."
            out[f"{head}.{k}.1."] = f"{head}.blocks.{k - 1}.norm."
        out[f"{head}.{n_dec_blocks + 1}.0."] = f"{head}.output."
    return out


def convert_published_state_dict(state: Mapping[str, Tensor], config: VAEConfig) -> dict[str, Tensor]:
    """Rename the authors' keys to ours; unknown keys are an error naming them."""
    prefixes = published_key_map(config)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        head, _, param = key.rpartition(".")
        new = prefixes.get(head + ".")
        if new is None:
            raise KeyError(f"unexpected key {key!r} in the published state dict")
        out[new + param] = value
    return out


def infer_config_from_published(state: Mapping[str, Tensor]) -> VAEConfig:
    """Recover the layer widths from the authors' state-dict shapes."""
    hidden, i = [], 0
    while f"encoder.{i}.0.weight" in state:
        hidden.append(int(state[f"encoder.{i}.0.weight"].shape[0]))
        i += 1
    if not hidden:
        raise KeyError("no encoder.0.0.weight: not a published sVAE state dict")
    return VAEConfig(input_dim=int(state["encoder.0.0.weight"].shape[1]),
                     latent_dim=int(state["mu.weight"].shape[0]), hidden=tuple(hidden))


def read_published(weight_pt: str | Path) -> tuple[Mapping[str, Tensor], dict[str, Any]]:
    """The authors' ``weight.pt``: (state dict, the other entries such as ``epoch``). Read as plain data only
    (shared.torchio): a file holding any other object is refused, never run."""
    from shared.torchio import load_plain
    path = Path(weight_pt)
    ckpt = load_plain(path, "sVAE weights file")
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: no model_state_dict of tensors in this weights file")
    meta = {k: v for k, v in ckpt.items() if k != "model_state_dict"} if "model_state_dict" in ckpt else {}
    return state, meta


def published_model(state: Mapping[str, Tensor], config: VAEConfig | None = None,
                    origin: str | Path = "weights") -> ScatterVAE:
    """A ScatterVAE in eval mode holding the authors' state dict; ValueError naming ``origin`` if it does not fit."""
    try:
        config = config or infer_config_from_published(state)
        model = ScatterVAE(config)
        model.load_state_dict(convert_published_state_dict(state, config), strict=True)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{origin}: not the published sVAE's weights ({detail})") from None
    return model.eval()


def load_published(weight_pt: str | Path, config: VAEConfig | None = None) -> ScatterVAE:
    """Load the authors' ``weight.pt`` (a dict with ``model_state_dict``) into a ScatterVAE in eval mode."""
    state, _ = read_published(weight_pt)
    return published_model(state, config, origin=weight_pt)


HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)  # the constant the loss drops, per coefficient
