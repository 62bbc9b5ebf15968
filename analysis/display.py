"""The one mapping from internal names (samples, feature sets, coordinates, tracks, metrics) to the labels people
read in figures and reports. Unknown names pass through with underscores as spaces, never as column names."""
from __future__ import annotations

import re

from analysis.classify import DESCRIPTIONS

LABELS: dict[str, str] = {
    # samples (analysis.samples)
    "pristine": "pristine stars", "good": "good stars",
    "pristine_cool_giants": "pristine giants, Teff < 5000 K", "good_cool_giants": "good giants, Teff < 5000 K",
    "heldout": "held-out stars", "test": "held-out test stars", "val": "validation stars",
    "train": "training stars",
    # α coordinates tested for bimodality
    "latent_fisher": "latent Fisher coordinate", "alpha_m": "[α/M] (APOGEE)", "mg_fe": "[Mg/Fe] (APOGEE)",
    # latent tracks
    "high_alpha": "high-α sequence", "low_alpha": "low-α sequence",
    # metrics
    "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
    "recall_high": "recall of high-α", "recall_low": "recall of low-α",
    **DESCRIPTIONS,
}
_FIXED_M_H = re.compile(r"fixed_m_h([-+]?\d*\.?\d+)")


def label(name: str) -> str:
    """The display label of an internal name; a paired difference of feature sets 'a-b' reads '(e) − (c)', the
    letters being those of the feature sets' own labels."""
    if name in LABELS:
        return LABELS[name]
    m = _FIXED_M_H.fullmatch(name)
    if m:
        return f"stars at [M/H] ≈ {float(m.group(1)):g}".replace("-", "−")
    a, sep, b = name.partition("-")
    if sep and a in DESCRIPTIONS and b in DESCRIPTIONS:
        return f"{_letter(a)} − {_letter(b)}"
    return name.replace("_", " ")


def _letter(feature_set: str) -> str:
    return DESCRIPTIONS[feature_set].split(" ", 1)[0]

