"""``simulate``: the click command that writes a synthetic XP × APOGEE survey (registered under ``xpvae``)."""
from __future__ import annotations

from pathlib import Path

import click

from shared.defaults import SEED

from .spectra import COEFFICIENT_MODELS, DEFAULT_COEFFICIENTS
from .survey import FORMATS


@click.command("simulate")
@click.option("--n-stars", type=int, default=10000, show_default=True, help="number of stars")
@click.option("--seed", type=int, default=SEED, show_default=True, help="random seed (same seed ⇒ same survey)")
@click.option("--alpha-signal", type=float, default=1.0, show_default=True,
              help="strength of the [α/M] features in the spectra (0 = no α information at all)")
@click.option("--label-fraction", type=float, default=0.3, show_default=True,
              help="fraction of stars with APOGEE-like labels")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="output directory (must not exist, or be empty)")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, default=("csv",),
              show_default=True, help="XP file formats to write (repeatable)")
@click.option("--mag-min", type=float, default=9.0, show_default=True, help="brightest G magnitude")
@click.option("--mag-max", type=float, default=17.5, show_default=True, help="faintest G magnitude")
@click.option("--population-mix", default=None, metavar="thin=W,thick=W,halo=W",
              help="relative population weights (default thin=0.70,thick=0.26,halo=0.04)")
@click.option("--chunk-size", type=int, default=5000, show_default=True, help="sources per XP file")
@click.option("--coefficients", type=click.Choice(COEFFICIENT_MODELS), default=DEFAULT_COEFFICIENTS,
              show_default=True, help="how SEDs become XP coefficients: ridge fit to GaiaXPy's bases, or "
                                      "forward through Gaia's DR3 instrument model (docs/simulator.md)")
@click.option("--anomaly-fraction", type=float, default=0.0, show_default=True,
              help="fraction of stars made anomalous (emission line, unresolved binary, corrupted band, wrong G "
                   "flux), flagged in truth.parquet's `anomaly` column; 0 leaves the survey unchanged")
def simulate(n_stars: int, seed: int, alpha_signal: float, label_fraction: float, out_dir: Path,
             formats: tuple[str, ...], mag_min: float, mag_max: float, population_mix: str | None,
             chunk_size: int, coefficients: str, anomaly_fraction: float) -> None:
    """Simulate a Gaia DR3 XP × APOGEE DR17 survey with known truth and write its files."""
    from .populations import parse_mix
    from .survey import simulate_survey, validate_arguments

    try:
        mix = parse_mix(population_mix) if population_mix else None
        validate_arguments(n_stars, seed, alpha_signal, label_fraction, (mag_min, mag_max), formats, chunk_size, mix,
                           coefficients, anomaly_fraction)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    with click.progressbar(length=n_stars, label="simulating", show_pos=True) as bar:
        state = {"done": 0}

        def progress(done: int, total: int | None, message: str) -> None:
            bar.update(done - state["done"])
            state["done"] = done

        try:
            summary = simulate_survey(n_stars, seed, alpha_signal=alpha_signal, label_fraction=label_fraction,
                                      out_dir=out_dir, formats=formats, mag_range=(mag_min, mag_max),
                                      population_mix=mix, chunk_size=chunk_size, progress=progress,
                                      coefficients=coefficients, anomaly_fraction=anomaly_fraction)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {summary.n_stars} stars, {summary.n_label_rows} label rows to {summary.out_dir} "
               f"in {summary.seconds:.1f} s (high-α among giants {summary.high_alpha_fraction_giants:.1%})")
    for kind, paths in summary.files.items():
        click.echo(f"  {kind}: {len(paths)} file(s), e.g. {paths[0]}")


if __name__ == "__main__":
    simulate()
