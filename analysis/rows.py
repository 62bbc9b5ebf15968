"""The one results format every analysis writes: flat row dicts that map 1:1 onto an SQL table, plus the
bundle (rows, figures, headline) an analysis run returns.

Row fields (all plain Python scalars or None):
  report     'alpha' | 'reconstruction'
  sample     the star selection, e.g. 'pristine', 'good_cool_giants', 'heldout'
  statistic  e.g. 'balanced_accuracy', 'dip_p', 'delta_bic', 'zscore_bias', 'msz_ratio'
  subject    what the statistic is about: a feature set, 'svae:bp_3' (model:coefficient), 'svae/label:bp_3' …
  bin_var    the label the stars were binned in ('m_h', 'teff', 'logg', 'alpha_m') or None for the whole sample
  bin_lo, bin_hi  the bin's half-open range [lo, hi)
  value, ci_lo, ci_hi  the estimate and its 95 % interval (None where no interval is defined)
  n          the number of stars behind the value
Non-finite numbers are stored as None so that every row survives JSON and SQL alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.progress import Progress as Progress  # the analyses import it from here

ROW_FIELDS = ("report", "sample", "statistic", "subject", "bin_var", "bin_lo", "bin_hi", "value", "ci_lo",
              "ci_hi", "n")

def _plain(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def make_row(report: str, sample: str, statistic: str, subject: str, value: Any, *, n: int | None = None,
             ci: tuple[Any, Any] | None = None, bin_var: str | None = None, bin_lo: Any = None,
             bin_hi: Any = None) -> dict[str, Any]:
    """One statistic as a row dict with the fields of ``ROW_FIELDS``."""
    return {
        "report": report, "sample": sample, "statistic": statistic, "subject": subject,
        "bin_var": bin_var, "bin_lo": _plain(bin_lo), "bin_hi": _plain(bin_hi),
        "value": _plain(value),
        "ci_lo": _plain(ci[0]) if ci is not None else None,
        "ci_hi": _plain(ci[1]) if ci is not None else None,
        "n": int(n) if n is not None else None,
    }


@dataclass
class AnalysisResult:
    """What an analysis run returns: all statistics as rows, the figures it drew, and the few numbers a
    reader looks at first (``headline``, JSON-serialisable)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None

    def select(self, **where: Any) -> list[dict[str, Any]]:
        """Rows whose fields equal every keyword given, e.g. ``select(sample='pristine', statistic='dip')``."""
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]


def no_progress(done: int, total: int | None, message: str) -> None:
    """The default progress callback: silent."""
