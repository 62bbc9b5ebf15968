"""One-paragraph, human-readable summaries of job results for the CLI."""
from __future__ import annotations


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def describe_result(kind: str, result: dict) -> str:
    if kind == "ingest":
        passed = f", passed over {result['files_skipped']}" if result.get("files_skipped") else ""
        lines = [f"ingest {result.get('source')}: files ok {result.get('files_ok', 0)}, failed "
                 f"{result.get('files_failed', 0)}{passed}; rows read {result.get('rows_read', 0)}, loaded "
                 f"{result.get('rows_loaded', 0)}, skipped {result.get('rows_skipped', 0)}, duplicates "
                 f"{result.get('rows_duplicate', 0)}"]
        lines += [f"FAILED {f}" for f in result.get("failed_files", [])]
        lines += _ingest_passed_over(result)
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
    if kind == "analyze_alpha_catalogue":
        return "\n".join(alpha_catalogue_lines(result))
    if kind == "analyze_reconstruction":
        from xpvae.headlines import reconstruction_lines
        lines = [f"report: {result['report']} ({len(result.get('figures', []))} figures beside it, "
                 f"{result.get('n_statistics', 0)} statistics in analysis_statistics)"]
        return "\n".join(lines + reconstruction_lines(result.get("headline") or {}))
    keys = {"train": ("name", "model_id", "epochs_completed", "resumed_from_epoch", "n_train", "batch_size", "lr",
                      "val_nll", "test_nll", "test_zscore_std", "likelihood", "diagonal_fallback_stars", "seconds",
                      "artifact"),
            "train_baseline": ("name", "model_id", "epochs_completed", "n_train", "test_nll", "artifact"),
            "infer": ("model_id", "n_shards", "n_results", "chi2", "seconds_read", "seconds_model", "seconds_write"),
            }.get(kind)
    items = result.items() if keys is None else ((k, result[k]) for k in keys if k in result)
    lines = [f"  {k:>20}: {_fmt(v)}" for k, v in items]
    if kind == "train":
        lines.insert(0, recipe_line(result.get("recipe")))
    return "\n".join(lines)


def recipe_line(recipe: dict | None) -> str:
    """Which training recipe ran and why (jobs without one ran on explicitly given settings)."""
    if not recipe:
        return "recipe: none, the job's own settings (e.g. the demo's batch 256, lr 2e-3, one cosine cycle)"
    return (f"recipe: {recipe['name']} — batch {recipe['batch_size']}, lr {recipe['lr']:g}, {recipe['epochs']} epochs, "
            f"t0 {recipe['t0']}: {recipe['reason']}")


def _ingest_passed_over(result: dict, limit: int = 20) -> list[str]:
    """What ingest read but did not load, and why: other DataLink products, files of another kind, notes."""
    lines = []
    other = result.get("other_products") or {}
    if other:
        from ingest.readers.products import describe_products
        lines.append(f"other DataLink products passed over (ingest gaia-xp takes XP_CONTINUOUS only): "
                     f"{describe_products(other)}")
    skipped = result.get("skipped_files", [])
    lines += [f"PASSED OVER {f}" for f in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"… {len(skipped) - limit} more files passed over (`xpvae job show ID --json`)")
    notes: dict[str, list[str]] = {}       # the same note on many files is said once
    for item in result.get("notes", []):
        path, _, note = item.partition(": ")
        notes.setdefault(note, []).append(path)
    for note, paths in list(notes.items())[:limit]:
        lines.append(f"NOTE {paths[0] if len(paths) == 1 else f'{len(paths)} files'}: {note}")
    return lines



def alpha_catalogue_lines(result: dict) -> list[str]:
    """The P(high-α) job in a few lines: what was stored, and how good it is on held-out labelled stars."""
    h = result.get("headline") or {}
    lines = [f"P(high-alpha) for {result.get('n_stars', 0)} stars in alpha_probabilities; classifier fitted on "
             f"{h.get('n_labelled')} {h.get('sample')} stars ({h.get('n_high_alpha')} high-alpha), "
             f"{h.get('calibration')} calibration",
             f"held-out (out-of-fold) Brier score: {_fmt(h.get('brier'))}",
             "reliability (predicted bin: mean predicted / observed fraction, n):"]
    for b in h.get("reliability", []):
        lines.append(f"  [{b['lo']:.1f}, {b['hi']:.1f}): {b['predicted']:.3f} / {b['observed']:.3f}  (n={b['n']})")
    for t, v in (h.get("thresholds") or {}).items():
        lines.append(f"P >= {t}: purity {_fmt(v['purity'])}, completeness {_fmt(v['completeness'])} (n={v['n']})")
    t90 = h.get("threshold_purity_0.9")
    lines.append(f"high-alpha candidates at purity >= 0.9 (P >= {t90}): {h.get('n_candidates_purity_0.9')}"
                 if t90 is not None else "no threshold reaches purity 0.9 on held-out stars: no candidates")
    return lines
