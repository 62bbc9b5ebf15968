"""One-paragraph, human-readable summaries of job results for the CLI."""
from __future__ import annotations


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe_result(kind: str, result: dict) -> str:
    if kind == "ingest":
        lines = [f"ingest {result.get('source')}: files ok {result.get('files_ok', 0)}, failed "
                 f"{result.get('files_failed', 0)}; rows read {result.get('rows_read', 0)}, loaded "
                 f"{result.get('rows_loaded', 0)}, skipped {result.get('rows_skipped', 0)}, duplicates "
                 f"{result.get('rows_duplicate', 0)}"]
        lines += [f"FAILED {f}" for f in result.get("failed_files", [])]
        for label, listed, total in (("SKIPPED", result.get("bad_rows", []), result.get("bad_rows_total")),
                                     ("DUPLICATE", result.get("duplicate_rows", []), result.get("rows_duplicate"))):
            lines += [f"{label} {b}" for b in listed[:50]]
            total = len(listed) if total is None else total
            if total > 50:
                lines.append(f"… {total - 50} more {label.lower()} rows (`xpvae job show ID --json` lists up "
                             "to 1000)")
        if result.get("norm_path"):
            lines.append(f"normalisation stored at {result['norm_path']}")
        return "\n".join(lines)
    if kind == "analyze_alpha":
        from xpvae.headlines import alpha_lines
        lines = [f"report: {result['report']} ({len(result.get('figures', []))} figures beside it, "
                 f"{result.get('n_statistics', 0)} statistics in analysis_statistics)"]
        return "\n".join(lines + alpha_lines(result.get("headline") or {}))
    if kind == "analyze_reconstruction":
        from xpvae.headlines import reconstruction_lines
        lines = [f"report: {result['report']} ({len(result.get('figures', []))} figures beside it, "
                 f"{result.get('n_statistics', 0)} statistics in analysis_statistics)"]
        return "\n".join(lines + reconstruction_lines(result.get("headline") or {}))
    keys = {"train": ("name", "model_id", "epochs_completed", "resumed_from_epoch", "n_train", "val_nll", "test_nll",
                      "test_zscore_std", "seconds", "artifact"),
            "train_baseline": ("name", "model_id", "epochs_completed", "n_train", "test_nll", "artifact"),
            "infer": ("model_id", "n_shards", "n_results", "chi2", "seconds_read", "seconds_model", "seconds_write"),
            }.get(kind)
    items = result.items() if keys is None else ((k, result[k]) for k in keys if k in result)
    return "\n".join(f"  {k:>20}: {_fmt(v)}" for k, v in items)
