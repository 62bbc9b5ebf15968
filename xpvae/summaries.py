"""One-paragraph, human-readable summaries of job results for the CLI."""
from __future__ import annotations


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe_result(kind: str, result: dict) -> str:
    if kind == "ingest":
        lines = [f"{result.get('source')}: {result.get('files_ok', '?')} file(s) loaded, "
                 f"{result.get('files_failed', 0)} failed; rows read {result.get('rows_read', 0):,}, "
                 f"loaded {result.get('rows_loaded', 0):,}, skipped {result.get('rows_skipped', 0):,}"]
        for f in result.get("failed_files", [])[:20]:
            lines.append(f"  FAILED {f}")
        for b in result.get("bad_rows", [])[:20]:
            lines.append(f"  skipped {b}")
        if len(result.get("bad_rows", [])) > 20:
            lines.append(f"  … {len(result['bad_rows']) - 20} more bad rows (see `xpvae job show --json`)")
        return "\n".join(lines)
    keys = {"train": ("name", "model_id", "epochs_completed", "resumed_from_epoch", "n_train", "val_nll", "test_nll",
                      "test_zscore_std", "seconds", "artifact"),
            "train_baseline": ("name", "model_id", "epochs_completed", "n_train", "test_nll", "artifact"),
            "infer": ("model_id", "n_shards", "n_stars"),
            }.get(kind)
    items = result.items() if keys is None else ((k, result[k]) for k in keys if k in result)
    return "\n".join(f"  {k:>20}: {_fmt(v)}" for k, v in items)
