"""Refit the XP error model on the real sources and regenerate ``error_calibration.py``.

    python -m ingest.simulate.calibrate [PATH_TO_FLAT_XP_FITS]

The default path is ``data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits`` under XPVAE_SHARED (by
default the repository's ``reference/`` folder).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .noise import fit_error_model, write_error_calibration

REAL_SOURCES = Path("data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits")


def default_real_sources() -> Path:
    from shared.settings import get_settings
    return get_settings().shared_dir / REAL_SOURCES


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else default_real_sources()
    model = fit_error_model(path)
    target = Path(__file__).with_name("error_calibration.py")
    write_error_calibration(model, target, source=f"the real Gaia DR3 sources in {REAL_SOURCES.as_posix()}")
    print(f"wrote {target} (shared scatter {model.shared_sd:.3f} dex)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
