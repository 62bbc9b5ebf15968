"""What each job kind accepts, checked twice with the same rules: at the CLI door (its option types wrap the
specs below, exit code 2) and by the runner before a job is created and again before it runs, for callers of
the API. Every refusal is an InputError whose one line names the CLI flag that sets the value."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from shared.errors import InputError
from shared.quality import FLAG_NAMES, SAMPLE_NAMES
from shared.recipe import RECIPES

INT64_MAX = 2 ** 63 - 1
SEED_MAX = 2 ** 32 - 1          # the narrowest seed any library here takes (scikit-learn's random_state)
MAX_LAYERS, MAX_WIDTH = 16, 4096
LATENT_MAX = 16                 # the most latents a model may have: inference_results has one column pair each
INGEST_SOURCES = ("gaia-xp", "photometry", "apogee", "catalogue")
RECONSTRUCTION_SPLITS = ("test", "validation", "all")


class BadParameter(InputError):
    """One value out of its range: ``flag`` and ``reason`` apart, so the CLI can word it click's way."""

    def __init__(self, flag: str, reason: str):
        super().__init__(f"{flag} {reason}")
        self.flag, self.reason = flag, reason


@dataclass(frozen=True)
class Number:
    """A numeric parameter: integer or finite float, within [lo, hi] (``lo_open``: lo itself excluded)."""
    flag: str
    integer: bool = True
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    @property
    def metavar(self) -> str:
        return "INTEGER" if self.integer else "NUMBER"

    def describe(self) -> str:
        what, num = ("an integer", lambda x: str(int(x))) if self.integer else ("a number", lambda x: f"{x:g}")
        if self.lo is not None and self.hi is not None:
            return f"{what} from {num(self.lo)} to {num(self.hi)}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {num(self.lo)}"
        return what

    def parse(self, value: Any) -> int | float:
        """``value`` (command-line text or a JSON number) as a number in range, else BadParameter."""
        try:
            v = self._convert(value)
        except (TypeError, ValueError, OverflowError):
            v = None
        if v is None or (self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)) \
                or (self.hi is not None and v > self.hi):
            raise BadParameter(self.flag, f"must be {self.describe()}, not {_show(value)}")
        return v

    def _convert(self, value: Any) -> int | float | None:
        if isinstance(value, bool):
            return None
        if self.integer:
            if isinstance(value, float):
                return int(value) if value.is_integer() else None
            return int(value.strip(), 10) if isinstance(value, str) else int(value)
        v = float(value)
        return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Widths:
    """Layer widths: a comma list on the command line, a list in JSON."""
    flag: str
    metavar = "W1,W2,..."

    def describe(self) -> str:
        return f"1 to {MAX_LAYERS} comma-separated integers from 1 to {MAX_WIDTH}"

    def parse(self, value: Any) -> tuple[int, ...]:
        items = value.split(",") if isinstance(value, str) else value
        try:
            widths = tuple(int(Number(self.flag, lo=1, hi=MAX_WIDTH).parse(w)) for w in items)
        except (TypeError, BadParameter):
            widths = ()
        if not 1 <= len(widths) <= MAX_LAYERS:
            raise BadParameter(self.flag, f"must be {self.describe()}, not {_show(value)}")
        return widths


@dataclass(frozen=True)
class Choice:
    """One of a few names; ``several``: a list of them is accepted too (quality flags combine)."""
    flag: str
    choices: tuple[str, ...]
    several: bool = False

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, value: Any) -> Any:
        values = list(value) if self.several and isinstance(value, (list, tuple)) and value else [value]
        if not all(isinstance(v, str) and v in self.choices for v in values):
            raise BadParameter(self.flag, f"must be {self.describe()}, not {_show(value)}")
        return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the parameters, by the CLI flag that sets them ----------------------------------------------------------
SEED = Number("--seed", lo=0, hi=SEED_MAX)
TRAIN = {
    "epochs": Number("--epochs", lo=1), "batch_size": Number("--batch-size", lo=1),
    "lr": Number("--lr", integer=False, lo=0, lo_open=True),
    "weight_decay": Number("--weight-decay", integer=False, lo=0),
    "t0": Number("--t0", lo=1), "seed": SEED, "checkpoint_every": Number("--checkpoint-every", lo=0),
}
SVAE = {"latent_dim": Number("--latent-dim", lo=1, hi=LATENT_MAX), "hidden": Widths("--hidden")}
SELECTION: dict[str, Number | Choice] = {
    "source_id_lo": Number("--source-id-min", lo=0, hi=INT64_MAX),
    "source_id_hi": Number("--source-id-max", lo=0, hi=INT64_MAX),
    "quality": Choice("--quality", FLAG_NAMES, several=True), "limit": Number("--limit", lo=1, hi=INT64_MAX),
}
INFER = {"shards": Number("--shards", lo=0), "batch_size": Number("--batch-size", lo=1)}
INGEST = {"files_per_shard": Number("--files-per-shard", lo=0)}
ALPHA = {"n_folds": Number("--folds", lo=2), "n_boot": Number("--bootstrap", lo=10), "seed": SEED}
ALPHA_CATALOGUE_SAMPLES = SAMPLE_NAMES
ALPHA_CATALOGUE_FEATURES = ("latents", "latents+colours")
ALPHA_CATALOGUE = {"sample": Choice("--sample", ALPHA_CATALOGUE_SAMPLES),
                   "features": Choice("--features", ALPHA_CATALOGUE_FEATURES), "seed": SEED}
RECONSTRUCTION = {"split": Choice("--split", RECONSTRUCTION_SPLITS), "max_stars": Number("--max-stars", lo=1),
                  "seed": SEED}
MODEL_ID = Number("--model", lo=1, hi=INT64_MAX)
JOB_ID = Number("JOB_ID", lo=1, hi=INT64_MAX)


def _check_fields(params: Mapping[str, Any], specs: Mapping[str, Any], where: str,
                  also: tuple[str, ...] = ()) -> None:
    """Each known field in range; a field nobody reads is refused (a typo would otherwise pass unseen)."""
    if not isinstance(params, Mapping):
        raise InputError(f"{where}: expected an object of parameters, not {_show(params)}")
    unknown = sorted(set(params) - set(specs) - set(also))
    if unknown:
        raise InputError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
    for key, spec in specs.items():
        if params.get(key) is not None:
            spec.parse(params[key])


def check_selection(sel: Mapping[str, Any] | None) -> None:
    sel = sel or {}
    _check_fields(sel, SELECTION, "selection", also=("labelled", "require_photometry", "require_both_bands",
                                                      "source_ids"))
    lo, hi = sel.get("source_id_lo"), sel.get("source_id_hi")
    if lo is not None and hi is not None and int(lo) > int(hi):
        raise InputError(f"--source-id-min {lo} is above --source-id-max {hi}: no star can match")


def describe_selection(sel: Mapping[str, Any] | None) -> str:
    """A selection the way the user typed it, e.g. "--quality good --limit 500" ("all stars" when empty)."""
    sel = dict(sel or {})
    parts = [f"{spec.flag} {sel[key]}" for key, spec in SELECTION.items() if sel.get(key) is not None]
    if sel.get("labelled") is not None:
        parts.append("--labelled" if sel["labelled"] else "--any-labels")
    if sel.get("source_ids") is not None:
        parts.append(f"{len(sel['source_ids'])} listed source ids")
    return " ".join(parts) or "all stars"


def _check_ingest(p: Mapping[str, Any]) -> None:
    _check_fields(p, {"source": Choice("ingest SOURCE", INGEST_SOURCES), **INGEST}, "ingest",
                  also=("paths", "correlations", "norm"))
    paths = p.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(x, str) and x for x in paths):
        raise InputError("ingest: PATHS must name at least one file, directory or glob")


def _check_training(p: Mapping[str, Any], model: Mapping[str, Any], train_keys: tuple[str, ...],
                    model_also: tuple[str, ...] = ()) -> None:
    _check_fields(p, {"recipe": Choice("--recipe", RECIPES)}, "train",
                  also=("name", "replace", "selection", "model", "train"))
    check_selection(p.get("selection"))
    _check_fields(p.get("train") or {}, {k: TRAIN[k] for k in train_keys}, "train",
                  also=("t_mult", "eta_min", "split", "compile", "threads", "likelihood"))
    _check_fields(p.get("model") or {}, model, "model", also=model_also)


def _check_train(p: Mapping[str, Any]) -> None:
    _check_training(p, SVAE, tuple(TRAIN))


def _check_baseline(p: Mapping[str, Any]) -> None:
    _check_training(p, {"hidden": Widths("hidden")}, tuple(TRAIN), ("label_names",))


def _check_infer(p: Mapping[str, Any]) -> None:
    _check_fields(p, {"model_id": MODEL_ID, **INFER}, "infer", also=("selection", "chi2", "batch_pause_s"))
    if p.get("model_id") is None:
        raise InputError("infer: --model is required")
    check_selection(p.get("selection"))


def _check_analysis(specs: Mapping[str, Any], also: tuple[str, ...] = ()) -> Callable[[Mapping[str, Any]], None]:
    def check(p: Mapping[str, Any]) -> None:
        _check_fields(p, {"model_id": MODEL_ID, **specs}, "analyze", also=also)
        if p.get("model_id") is None:
            raise InputError("analyze: --model is required")
        if p.get("baseline_id") is not None:
            Number("--baseline", lo=1, hi=INT64_MAX).parse(p["baseline_id"])
    return check


CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "ingest": _check_ingest, "train": _check_train, "train_baseline": _check_baseline, "infer": _check_infer,
    "analyze_alpha": _check_analysis(ALPHA), "analyze_alpha_catalogue": _check_analysis(ALPHA_CATALOGUE),
    "analyze_reconstruction": _check_analysis(RECONSTRUCTION, ("baseline_id",)),
}


def check_params(kind: str, params: Mapping[str, Any] | None) -> None:
    """Raise InputError (naming the CLI flag) unless ``params`` are valid for a job of ``kind``."""
    check = CHECKS.get(kind)
    if check is not None:
        check(params if params is not None else {})
