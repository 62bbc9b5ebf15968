"""Refit the XP error model on the real sources and regenerate ``error_calibration.py``; with
``--instrument``, refit the instrument model's edge correction and null fill and regenerate
``instrument_calibration.py``; with ``--sed``, refit the forward model's empirical SED correction and regenerate
``sed_calibration.py`` (after any change to the instrument model or the SEDs).

    python -m simulator.calibrate [--instrument | --sed] [PATH_TO_FLAT_XP_FITS]

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
    argv = sys.argv[1:] if argv is None else list(argv)
    instrument = "--instrument" in argv
    argv = [a for a in argv if a != "--instrument"]
    path = Path(argv[0]) if argv else default_real_sources()
    if instrument:
        return _calibrate_instrument(path)
    if "--sed" in argv:
        return _calibrate_sed(Path(argv[1]) if len(argv) > 1 else default_real_sources())
    model = fit_error_model(path)
    target = Path(__file__).with_name("error_calibration.py")
    write_error_calibration(model, target, source=f"the real Gaia DR3 sources in {REAL_SOURCES.as_posix()}")
    print(f"wrote {target} (shared scatter {model.shared_sd:.3f} dex)")
    return 0


def _calibrate_instrument(path: Path) -> int:
    from .instrument import (
        CALIBRATION_G_MAX,
        calibration_sources,
        fit_edge_correction,
        fit_null_fill,
        write_instrument_calibration,
    )
    from .noise import read_flat_real_sources
    from .xp_basis import xp_basis
    c, _ = read_flat_real_sources(path)
    use = calibration_sources(c)
    basis = xp_basis()
    w = fit_edge_correction(c[use], basis.sample(c[use]), basis.wavelength)
    fill = fit_null_fill(c[use], basis.sample(c[use]), basis.wavelength)
    target = Path(__file__).with_name("instrument_calibration.py")
    source = f"the {int(use.sum())} real Gaia DR3 sources with G < {CALIBRATION_G_MAX} in {REAL_SOURCES.as_posix()}"
    write_instrument_calibration(w, fill, target, source)
    print(f"wrote {target} from {int(use.sum())} sources")
    return 0


def _calibrate_sed(path: Path) -> int:
    from .sed_correction import refit_sed_calibration
    target = Path(__file__).with_name("sed_calibration.py")
    n_params = refit_sed_calibration(path, target, REAL_SOURCES.as_posix())
    print(f"wrote {target} ({n_params} free parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
