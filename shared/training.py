"""The training engine: one loop for the sVAE and the label baseline (docs/science.md §5).

The engine is generic over a model that exposes
  ``make_noise(batch_size, generator) -> Tensor | None``  (the per-step random draw, e.g. the ε of z = μ + σε)
  ``batch_loss(batch, noise) -> (loss, nll, kl)``          (batch means; ``batch`` is a tuple of row tensors)
Speed: all data live as tensors on the device, batches are gathered by a shuffled index (torch.randperm with
a seeded generator), losses accumulate on the device and are read once per epoch. Resuming a checkpoint
restores model, optimiser, scheduler, every random state, split, normalisation and history, so an
interrupted and resumed run yields bit-identical weights to an uninterrupted one (same device and threads).
Checkpoints hold plain data only (tensors, numbers, strings, lists, dicts) and are read with
``weights_only=True`` (shared.torchio): a file placed where a checkpoint is expected cannot run code.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar, cast

import numpy as np
import torch
from torch import nn

from shared import defaults as D
from shared.covariance import MIN_EIGENVALUE, usable_correlations
from shared.device import configure_threads, resolve_device
from shared.errors import InputError
from shared.model import ScatterVAE, VAEConfig
from shared.preprocessing import Normalisation, RowExclusion, finite_rows
from shared.progress import Progress
from shared.torchio import load_format, plain, save_atomic
from shared.xp import N_CORR

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)
LossTerms = tuple[torch.Tensor, torch.Tensor, torch.Tensor]     # batch means of (loss, nll, kl)
LossFn = Callable[[tuple[torch.Tensor, ...], "torch.Tensor | None"], LossTerms]
CHECKPOINT_FORMAT = "xpvae-train-checkpoint/1"
# CPU compile takes ~10–40 s; below this much work (spectra × epochs) eager mode finishes sooner.
AUTO_COMPILE_MIN_WORK = 5_000_000
LIKELIHOODS = ("diagonal", "full")


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the message names the epoch and the values."""


@dataclass
class TrainConfig:
    """Optimiser, schedule, batching, split and engine settings. Defaults are the published recipe."""
    epochs: int = 5000
    batch_size: int = 1024               # the last partial batch of each epoch is dropped
    lr: float = 1e-4
    weight_decay: float = D.WEIGHT_DECAY
    t0: int = 500                        # CosineAnnealingWarmRestarts, stepped once per epoch
    t_mult: int = 1
    eta_min: float = 1e-10
    split: tuple[float, float, float] = D.SPLIT     # train / validation / test
    seed: int = D.SEED
    checkpoint_every: int = D.CHECKPOINT_EVERY     # epochs; 0 = only at the end and when stopped
    eval_batch_size: int = 16384
    compile: bool | str = "auto"         # True, False or 'auto' (CUDA, or enough CPU work to pay back)
    threads: int | None = None           # CPU intra-op threads; None = all CPUs this process may use
    device: str | None = None            # None = Settings.device
    likelihood: str = "diagonal"         # 'diagonal' (the published recipe) or 'full' (per-star XP covariance)

    def __post_init__(self) -> None:
        split = tuple(float(f) for f in self.split)
        if len(split) != 3 or min(split) < 0 or split[0] <= 0 or abs(sum(split) - 1) > 1e-6:
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {split}")
        self.split = (split[0], split[1], split[2])
        if self.epochs < 1 or self.batch_size < 1 or self.t0 < 1 or self.t_mult < 1:
            raise ValueError(f"epochs, batch_size, t0 and t_mult must be >= 1: {self}")
        if self.compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', not {self.compile!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {self.likelihood!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split"] = list(self.split)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {sorted(unknown)}")
        return cls(**dict(d))


# Fields that may change between an interrupted run and its resumption without breaking exactness.
_RESUME_MUTABLE = {"epochs", "checkpoint_every", "eval_batch_size", "device", "compile", "threads"}


def make_split(n: int, fractions: Sequence[float] = D.SPLIT, seed: int = D.SEED) -> dict[str, np.ndarray]:
    """Seeded three-way split of row positions 0..n-1: sorted index arrays 'train', 'validation', 'test'."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    n_train = n - n_val - n_test
    parts = {"train": perm[:n_train], "validation": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: np.sort(v).astype(np.int64) for k, v in parts.items()}


@dataclass
class TrainResult:
    """What a training run produced. ``model`` is on the CPU in eval mode."""
    kind: str                          # 'svae' or 'label_baseline'
    model: nn.Module
    model_config: dict[str, Any]
    train_config: TrainConfig
    normalisation: Normalisation
    split: dict[str, np.ndarray]       # row positions in the arrays given to fit_*
    excluded: RowExclusion
    history: list[dict[str, float]]
    epochs_completed: int
    stopped: bool                      # True when should_stop() ended it early
    compiled: bool
    device: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    likelihood: dict[str, Any] = field(default_factory=lambda: {"kind": "diagonal"})

    def summary(self) -> dict[str, Any]:
        """Plain-data digest for the model registry/artifact."""
        last = self.history[-1] if self.history else {}
        return {"epochs_completed": self.epochs_completed, "stopped": self.stopped, "final": last,
                "train_config": self.train_config.to_dict(), "compiled": self.compiled, "device": self.device,
                "seconds": self.seconds, "excluded_rows": self.excluded.to_dict(),
                "n_rows": {k: int(v.size) for k, v in self.split.items()}, "likelihood": self.likelihood}


# ------------------------------------------------------------------------------------------------------
# checkpoint I/O

def _rng_states(gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    states: dict[str, Any] = {k: g.get_state() for k, g in gens.items()}
    states["torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(gens: Mapping[str, torch.Generator], states: Mapping[str, Any]) -> None:
    for k, g in gens.items():
        g.set_state(states[k])
    torch.set_rng_state(states["torch_cpu"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, read as plain data only; ValueError (one line, naming the file and what to do)
    when it is refused, unreadable or of another format."""
    return load_format(path, CHECKPOINT_FORMAT, "training checkpoint",
                       remedy="delete it to train from the first epoch")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


# ------------------------------------------------------------------------------------------------------
# the engine

def _loss_fn(model: nn.Module) -> LossFn:
    """The model's ``batch_loss`` (see the module docstring), typed: to mypy an nn.Module's attributes are
    tensors or modules."""
    return cast(LossFn, model.batch_loss)


def _make_noise(model: nn.Module, batch_size: int, generator: torch.Generator | None) -> torch.Tensor | None:
    make = cast(Callable[[int, "torch.Generator | None"], "torch.Tensor | None"], model.make_noise)
    return make(batch_size, generator)


def _want_compile(cfg: TrainConfig, device: torch.device, n_train: int) -> bool:
    if cfg.compile == "auto":
        return device.type == "cuda" or n_train * cfg.epochs >= AUTO_COMPILE_MIN_WORK
    return bool(cfg.compile)


def make_adamw(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """Fused AdamW (one kernel for all 64 parameter tensors: ~10 % faster steps on CPU) where this torch
    supports it on the device, else the foreach implementation."""
    implementations: tuple[dict[str, Any], ...] = ({"fused": True}, {"foreach": True}, {})
    for kwargs in implementations:
        try:
            return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            continue
    raise RuntimeError("could not construct AdamW")


@torch.no_grad()
def evaluate_loss(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int,
                  generator: torch.Generator | None) -> tuple[float, float, float]:
    """Mean (loss, nll, kl) per row over all rows, in eval mode (BatchNorm running statistics).
    Like the release's validation, z is sampled (the ELBO estimate); pass a seeded generator."""
    n = tensors[0].shape[0]
    if n == 0:
        return (float("nan"),) * 3
    was_training = model.training
    model.eval()
    acc = torch.zeros(3, dtype=torch.float64, device=tensors[0].device)
    for i in range(0, n, batch_size):
        batch = tuple(t[i:i + batch_size] for t in tensors)
        m = batch[0].shape[0]
        loss, nll, kl = _loss_fn(model)(batch, _make_noise(model, m, generator))
        acc += torch.stack([loss, nll, kl]).double() * m
    model.train(was_training)
    return tuple((acc / n).tolist())


def train_model(model: nn.Module, train: Sequence[np.ndarray], validation: Sequence[np.ndarray],
                config: TrainConfig, *, callback: Callable[[dict[str, float]], None] | None = None,
                checkpoint_path: str | Path | None = None, resume: bool = True,
                should_stop: Callable[[], bool] | None = None, progress: Progress | None = None,
                extra_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on row-aligned arrays ``train`` (and ``validation``, may be empty).

    ``extra_state`` (split, normalisation, …) is stored in every checkpoint; when resuming, it must equal the
    checkpoint's, else ValueError (the data or split changed). Returns a dict with history, epochs_completed,
    stopped, compiled, device, seconds. Raises TrainingDiverged on a non-finite training or validation loss.
    """
    device = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        configure_threads(config.threads)
    try:
        return _train_loop(model, train, validation, config, device, callback=callback,
                           checkpoint_path=checkpoint_path, resume=resume, should_stop=should_stop, progress=progress,
                           extra_state=extra_state)
    finally:  # thread count is process-wide: leave it as found
        torch.set_num_threads(threads_before)


def _train_loop(model: nn.Module, train: Sequence[np.ndarray], validation: Sequence[np.ndarray],
                config: TrainConfig, device: torch.device, *, callback, checkpoint_path, resume, should_stop,
                progress, extra_state) -> dict[str, Any]:
    t_start = time.perf_counter()
    n_train = int(train[0].shape[0])
    steps = _steps_per_epoch(n_train, config.batch_size)
    train_t, val_t = _on_device(train, device), _on_device(validation, device)
    run = _Run(model, config, device, checkpoint_path, extra_state)
    if resume:
        run.resume()
    run.compile(n_train)
    stopped = False
    epoch = run.start_epoch
    for epoch in range(run.start_epoch + 1, config.epochs + 1):
        metrics = run.epoch(epoch, train_t, val_t, steps)
        run.history.append(metrics)
        if callback is not None:
            callback(metrics)
        if progress is not None:
            progress(epoch, config.epochs, f"epoch {epoch}: loss {metrics['loss']:.3f}, val {metrics['val_loss']:.3f}")
        stopped = should_stop is not None and epoch < config.epochs and bool(should_stop())
        if epoch == config.epochs or stopped or (config.checkpoint_every and epoch % config.checkpoint_every == 0):
            run.save(epoch)
        if stopped:
            break
    model.eval()
    return {"history": run.history, "epochs_completed": epoch if run.history else run.start_epoch,
            "stopped": stopped, "compiled": run.compiled, "device": str(device),
            "seconds": time.perf_counter() - t_start}


def _steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches an epoch (the last partial batch is dropped); none at all is a usage error."""
    if n_train < batch_size:
        raise InputError(f"--batch-size {batch_size} is larger than the {n_train} training spectra (the "
                         f"training split of the selection): pass --batch-size {n_train} or less, or select more stars")
    return n_train // batch_size


def _on_device(arrays: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device) for a in arrays)


def _check_resumable(ckpt: Mapping[str, Any], config: TrainConfig, extra_state: Mapping[str, Any],
                     path: Path) -> None:
    """A checkpoint resumes only the same run: same settings (but those in _RESUME_MUTABLE) and same data."""
    old_cfg = ckpt["train_config"]
    changed = [k for k, v in config.to_dict().items() if k not in _RESUME_MUTABLE and not _same(v, old_cfg.get(k))]
    if changed:
        raise ValueError(f"{path}: cannot resume, TrainConfig changed in {changed}")
    if not _same(extra_state, ckpt["extra"]):
        keys = [k for k in set(extra_state) | set(ckpt["extra"]) if not _same(extra_state.get(k), ckpt["extra"].get(k))]
        raise ValueError(f"{path}: cannot resume, the data differ from the checkpoint's in {keys}")


class _Run:
    """The state one training run carries from epoch to epoch, and its steps: resume, compile, epoch (train
    steps, then validation) and checkpoint. Everything a checkpoint restores lives here."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device,
                 checkpoint_path: str | Path | None, extra_state: Mapping[str, Any] | None) -> None:
        self.model, self.config, self.device = model, config, device
        self.extra_state = dict(extra_state or {})
        self.ckpt_path = Path(checkpoint_path) if checkpoint_path else None
        model.to(device).train()
        self.optimizer = make_adamw(model, config, device)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=config.t0, T_mult=config.t_mult, eta_min=config.eta_min)
        self.gens = {"shuffle": torch.Generator(device=device).manual_seed(config.seed + 1),
                     "noise": torch.Generator(device=device).manual_seed(config.seed + 2)}
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.step_loss: LossFn = _loss_fn(model)
        self.compiled = False

    def resume(self) -> None:
        """Continue from the checkpoint, if there is one: model, optimiser, schedule, random states, history."""
        if self.ckpt_path is None or not self.ckpt_path.exists():
            return
        ckpt = load_checkpoint(self.ckpt_path)
        _check_resumable(ckpt, self.config, self.extra_state, self.ckpt_path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_states(self.gens, ckpt["rng"])
        self.history = list(ckpt["history"])
        self.start_epoch = int(ckpt["epoch"])
        log.info("resumed %s at epoch %d", self.ckpt_path, self.start_epoch)

    def compile(self, n_train: int) -> None:
        if self.start_epoch >= self.config.epochs or not _want_compile(self.config, self.device, n_train):
            return
        try:
            self.step_loss = cast(LossFn, torch.compile(_loss_fn(self.model)))
            self.compiled = True
        except Exception as exc:  # e.g. no C++ compiler: eager works everywhere
            log.warning("torch.compile unavailable (%s); training eagerly", exc)

    def _loss(self, batch: tuple[torch.Tensor, ...], noise: torch.Tensor | None) -> LossTerms:
        try:
            return self.step_loss(batch, noise)
        except Exception as exc:
            if not self.compiled:
                raise
            log.warning("compiled step failed (%s); falling back to eager", exc)
            self.step_loss, self.compiled = _loss_fn(self.model), False
            return self.step_loss(batch, noise)

    def _train_steps(self, train_t: tuple[torch.Tensor, ...], steps: int) -> list[float]:
        """One pass over the shuffled training rows; mean (loss, nll, kl) of its steps."""
        B = self.config.batch_size
        n_train = train_t[0].shape[0]
        self.model.train()
        perm = torch.randperm(n_train, generator=self.gens["shuffle"], device=self.device)
        acc = torch.zeros(3, device=self.device)
        for s in range(steps):
            idx = perm[s * B:(s + 1) * B]
            batch = tuple(t[idx] for t in train_t)
            noise = _make_noise(self.model, B, self.gens["noise"])
            self.optimizer.zero_grad(set_to_none=True)
            loss, nll, kl = self._loss(batch, noise)
            loss.backward()
            self.optimizer.step()
            acc += torch.stack([loss.detach(), nll.detach(), kl.detach()])
        self.scheduler.step()
        return (acc / steps).tolist()       # the one host sync of the epoch

    def _validate(self, val_t: tuple[torch.Tensor, ...], epoch: int) -> tuple[float, float, float]:
        if not val_t or not val_t[0].shape[0]:
            return (float("nan"),) * 3
        # Validation noise comes from its own generator seeded per epoch: no state to carry across resumes.
        val_gen = torch.Generator(device=self.device).manual_seed(self.config.seed * 100_003 + epoch)
        return evaluate_loss(self.model, val_t, self.config.eval_batch_size, val_gen)

    def epoch(self, epoch: int, train_t: tuple[torch.Tensor, ...], val_t: tuple[torch.Tensor, ...],
              steps: int) -> dict[str, float]:
        """Train one epoch and validate; its metrics. TrainingDiverged on a non-finite loss."""
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        tr = self._train_steps(train_t, steps)
        val = self._validate(val_t, epoch)
        metrics = {"epoch": epoch, "loss": tr[0], "nll": tr[1], "kl": tr[2], "val_loss": val[0], "val_nll": val[1],
                   "val_kl": val[2], "lr": lr, "seconds": time.perf_counter() - t0}
        has_val = bool(val_t) and bool(val_t[0].shape[0])
        if not np.isfinite(tr[0]) or (has_val and not np.isfinite(val[0])):
            raise TrainingDiverged(f"non-finite loss at epoch {epoch}: train loss={tr[0]}, nll={tr[1]}, kl={tr[2]}, "
                                   f"validation loss={val[0]} (lr={lr:.3g}); lower the learning rate or check inputs")
        return metrics

    def save(self, epoch: int) -> None:
        if self.ckpt_path is None:
            return
        # torch's own states are tensors and plain values already; plain() turns the numpy arrays of the
        # extra state (split, normalisation) into tensors, so that load_plain accepts the file
        save_atomic({"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": _rng_states(self.gens), "history": self.history, "train_config": self.config.to_dict(),
                     "extra": plain(self.extra_state), "saved": time.time()}, self.ckpt_path)


# ------------------------------------------------------------------------------------------------------
# the sVAE entry point

def prepare_rows(arrays: Sequence[np.ndarray], names: tuple[str, ...], config: TrainConfig
                 ) -> tuple[np.ndarray, RowExclusion, dict[str, np.ndarray]]:
    """Keep the finite rows and split them. Returns (kept row positions, exclusion report, split) where the
    split holds row positions in the caller's arrays."""
    ok, excluded = finite_rows(*arrays, names=names)
    if excluded.count:
        log.warning("%s", excluded)
    kept = np.flatnonzero(ok)
    if kept.size < 2:
        raise ValueError(f"only {kept.size} usable rows; {excluded}")
    local = make_split(kept.size, config.split, config.seed)
    return kept, excluded, {k: kept[v] for k, v in local.items()}


def init_seeded(build: Callable[[], M], seed: int) -> M:
    """Build a module with weights drawn from ``seed`` without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def full_likelihood_correlations(correlations: np.ndarray | None, rows: np.ndarray
                                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """The per-star correlations the full likelihood trains with, and its report.

    ``correlations``: (N, 2, 1485) strict lower triangles per band, NaN where absent (as db.spectra reads them).
    A band whose correlations are missing, not finite or not safely positive definite (smallest eigenvalue
    below shared.covariance.MIN_EIGENVALUE) gets zeros, i.e. R = I: for it the full likelihood is exactly the
    diagonal one. Those fallbacks are counted over ``rows`` (the rows trained, validated and tested on)."""
    if correlations is None:
        raise ValueError("the full likelihood needs the stars' XP correlations: read the spectra with "
                         "correlations (ingest without --no-correlations) or train with likelihood 'diagonal'")
    corr = np.asarray(correlations, dtype=np.float32)
    if corr.ndim != 3 or corr.shape[1:] != (2, N_CORR):
        raise ValueError(f"correlations must be (N, 2, {N_CORR}), got {corr.shape}")
    usable = usable_correlations(corr.reshape(-1, N_CORR)).reshape(-1, 2)
    out = np.where(usable[:, :, None], corr, np.float32(0.0))
    kept = usable[rows]
    report: dict[str, Any] = {"kind": "full", "stars": int(rows.size),
              "diagonal_fallback": {"bp": int((~kept[:, 0]).sum()), "rp": int((~kept[:, 1]).sum()),
                                    "stars": int((~kept.all(axis=1)).sum())},
              "fallback_rule": f"correlations missing, not finite or smallest eigenvalue < {MIN_EIGENVALUE:g}",
              "digest": hashlib.blake2b(np.ascontiguousarray(out[rows]).tobytes(), digest_size=16).hexdigest()}
    if report["diagonal_fallback"]["stars"]:
        log.warning("full likelihood: %d of %d stars fall back to the diagonal in at least one band (%s)",
                    report["diagonal_fallback"]["stars"], rows.size, report["fallback_rule"])
    return out, report


def fit_scatter_vae(x: np.ndarray, x_err: np.ndarray, model_config: VAEConfig | None = None,
                    train_config: TrainConfig | None = None, callback: Callable[[dict[str, float]], None] | None = None,
                    checkpoint_path: str | Path | None = None, resume: bool = True,
                    should_stop: Callable[[], bool] | None = None, progress: Progress | None = None,
                    correlations: np.ndarray | None = None) -> TrainResult:
    """Train an sVAE on G-flux-normalised coefficients x, x_err (N, 110).

    Non-finite rows are excluded and reported (``result.excluded``); the rest are split train/validation/test
    with ``train_config.seed``; the normalisation is fitted on the training split only. With
    ``train_config.likelihood == 'full'`` the NLL is N(x | x̂, Σ + diag(ŝ²)) with Σ from ``correlations``
    (N, 2, 1485) (see full_likelihood_correlations for the fallback to the diagonal).
    """
    model_config = model_config or VAEConfig()
    cfg = train_config or TrainConfig()
    x = np.asarray(x, dtype=np.float64)
    x_err = np.asarray(x_err, dtype=np.float64)
    if x.ndim != 2 or x.shape != x_err.shape or x.shape[1] != model_config.input_dim:
        raise ValueError(f"x and x_err must both be (N, {model_config.input_dim}); got {x.shape} and {x_err.shape}")
    if cfg.likelihood == "full" and correlations is not None and len(correlations) != len(x):
        raise ValueError(f"correlations have {len(correlations)} rows, x has {len(x)}")
    kept, excluded, split = prepare_rows((x, x_err), ("x", "x_err"), cfg)
    norm = Normalisation.fit(x[split["train"]])
    xs, es = norm.apply(x, x_err)
    arrays = [xs, es]
    likelihood: dict[str, Any] = {"kind": "diagonal"}
    if cfg.likelihood == "full":
        corr, likelihood = full_likelihood_correlations(correlations, kept)
        if likelihood["diagonal_fallback"]["stars"] < kept.size:   # otherwise the diagonal loss is the same, cheaper
            arrays.append(corr)
    model = init_seeded(lambda: ScatterVAE(model_config), cfg.seed)
    extra = {"split": {k: v for k, v in split.items()}, "normalisation": norm.to_dict(), "kind": "svae",
             "model_config": model_config.to_dict(), "likelihood": likelihood}
    out = train_model(model, tuple(a[split["train"]] for a in arrays), tuple(a[split["validation"]] for a in arrays),
                      cfg, callback=callback, checkpoint_path=checkpoint_path, resume=resume,
                      should_stop=should_stop, progress=progress, extra_state=extra)
    return TrainResult(kind="svae", model=model.cpu().eval(), model_config=model_config.to_dict(), train_config=cfg,
                       normalisation=norm, split=split, excluded=excluded, history=out["history"],
                       epochs_completed=out["epochs_completed"], stopped=out["stopped"], compiled=out["compiled"],
                       device=out["device"], seconds=out["seconds"], likelihood=likelihood)
