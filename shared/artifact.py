"""ModelArtifact: one self-describing file per trained model.

The file is ``torch.save`` of a plain dict (strings, numbers, lists, tensors only, so it loads with
``weights_only=True``): kind ('svae' or 'label_baseline'), config, normalisation, state_dict, training summary,
splits, xpvae version and creation time. Writing is atomic (temporary file, then rename).
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from shared.preprocessing import Normalisation

FORMAT = "xpvae-model/1"
KINDS = ("svae", "label_baseline")


def xpvae_version() -> str:
    try:
        from importlib.metadata import version
        return version("xpvae")
    except Exception:  # not installed as a distribution
        return "0+unknown"


def _plain(obj: Any) -> Any:
    """numpy → lists/tensors so the file needs no pickle of arbitrary classes."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


@dataclass
class ModelArtifact:
    kind: str
    config: dict[str, Any]
    normalisation: Normalisation
    state_dict: dict[str, torch.Tensor]
    training: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Any] = field(default_factory=dict)     # e.g. row positions or source_ids per split
    version: str = field(default_factory=xpvae_version)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    source: str = "trained"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, not {self.kind!r}")

    # --- construction ---
    def build_model(self) -> nn.Module:
        """The network with these weights, on the CPU, in eval mode."""
        if self.kind == "svae":
            from shared.model import ScatterVAE, VAEConfig
            model: nn.Module = ScatterVAE(VAEConfig.from_dict(self.config))
        else:
            from shared.baseline import BaselineConfig, LabelBaseline
            model = LabelBaseline(BaselineConfig.from_dict(self.config))
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()

    @classmethod
    def from_training(cls, result, splits: Mapping[str, Any] | None = None) -> "ModelArtifact":
        """From a shared.training.TrainResult. ``splits`` defaults to the row positions of the run; pass
        source_ids per split instead when the caller has them."""
        return cls(kind=result.kind, config=dict(result.model_config), normalisation=result.normalisation,
                   state_dict={k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()},
                   training=result.summary(), splits=dict(splits if splits is not None else result.split))

    @classmethod
    def from_published(cls, weight_pt: str | Path, norm_npz: str | Path | None = None) -> "ModelArtifact":
        """The authors' release: weight.pt (+ apogee_norm.npz when available; without it the normalisation
        is the identity and inputs must already be standardised — recorded in ``training['note']``)."""
        from shared.model import load_published
        model = load_published(weight_pt)
        ckpt_epoch = None
        try:
            ckpt_epoch = torch.load(weight_pt, map_location="cpu", weights_only=False).get("epoch")
        except Exception:
            pass
        n = model.config.input_dim
        norm = Normalisation.from_npz(norm_npz) if norm_npz else Normalisation(np.zeros(n), np.ones(n))
        note = "published weights" + ("" if norm_npz else "; no apogee_norm.npz given: identity normalisation")
        return cls(kind="svae", config=model.config.to_dict(), normalisation=norm,
                   state_dict={k: v.clone() for k, v in model.state_dict().items()},
                   training={"note": note, "epochs_completed": ckpt_epoch},
                   source=f"published:{Path(weight_pt).name}" + (f"+{Path(norm_npz).name}" if norm_npz else ""))

    # --- I/O ---
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "config": _plain(self.config),
                "normalisation": self.normalisation.to_dict(), "state_dict": dict(self.state_dict),
                "training": _plain(self.training), "splits": _plain(self.splits), "version": self.version,
                "created": self.created, "source": self.source}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.to_dict(), tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ModelArtifact":
        path = Path(path)
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable xpvae model artifact: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not an xpvae model artifact (expected format {FORMAT!r})")
        missing = [k for k in ("kind", "config", "normalisation", "state_dict") if k not in d]
        if missing:
            raise ValueError(f"{path}: artifact lacks field(s) {missing}")
        return cls(kind=d["kind"], config=d["config"], normalisation=Normalisation.from_dict(d["normalisation"]),
                   state_dict=d["state_dict"], training=d.get("training", {}), splits=d.get("splits", {}),
                   version=d.get("version", "?"), created=d.get("created", "?"), source=d.get("source", "?"))
