"""The demo's anomaly headline: how many of the simulator's injected anomalies the stored score ranks on top.

Reads the survey's truth (``anomaly`` column of truth.parquet) and the model's rows of inference_results; the
baseline ranks by χ² without the learned scatter (``zscore_rms``: χ²/110 = zscore_rms², diagonal errors).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from db.results import read_anomaly_scores
from shared.anomaly import recall_at

TOP = (0.01, 0.05)


def stored_recall(engine, model_name: str, truth_path: Path) -> dict:
    """{'n': stars scored, 'counts': {kind: n}, 'score'|'baseline': {kind|'any': {top: recall}}}; {} when the
    survey has no injected anomalies."""
    import pyarrow.parquet as pq
    names = pq.ParquetFile(truth_path).schema_arrow.names
    if "anomaly" not in names:
        return {}
    truth = pq.read_table(truth_path, columns=["source_id", "anomaly"])
    ids = truth.column("source_id").to_numpy()
    kinds = truth.column("anomaly").to_numpy(zero_copy_only=False).astype(str)
    got, score, baseline = read_anomaly_scores(engine, model_name)
    if not len(got):
        return {}
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids, got, sorter=order)]
    kind = kinds[pos]
    ranks = {"score": score, "baseline": baseline}
    sets = {**{k: kind == k for k in sorted(set(kind) - {""})}, "any": kind != ""}
    out = {"n": len(got), "counts": {k: int(v.sum()) for k, v in sets.items()}}
    for name, s in ranks.items():
        out[name] = {k: {f: recall_at(s, hit, f) for f in TOP} for k, hit in sets.items()}
    return out


def recall_lines(res: dict) -> list[str]:
    """Lines for people: recall per kind in the top 1 % / 5 % of the score and of the baseline."""
    if not res:
        return []
    lines = [f"\ninjected anomalies found by the anomaly score among {res['n']:,} stars (top 1 % / top 5 %; "
             "baseline: χ² without the learned scatter):"]
    for k, n in res["counts"].items():
        s, b = res["score"][k], res["baseline"][k]
        lines.append(f"  {k:9s} ({n:4d}): {s[0.01]:.2f} / {s[0.05]:.2f}   baseline {b[0.01]:.2f} / {b[0.05]:.2f}")
    return lines
