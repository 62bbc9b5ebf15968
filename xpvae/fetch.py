"""`xpvae fetch`: download Gaia XP spectra (DataLink) and photometry (TAP) from the archive, optionally ingest."""
from __future__ import annotations

import click

from xpvae.jobrun import EXIT_FAILED, EXIT_UNAVAILABLE, _die

EXIT_USAGE = 2


def source_options(fn):
    """Where the source list comes from: exactly one of an id file, an ADQL query, an APOGEE file."""
    opts = [
        click.option("--source-ids", type=click.Path(exists=True, dir_okay=False),
                     help="file of Gaia DR3 source ids (one per line, or any table with a source_id column)"),
        click.option("--adql", help="ADQL query run on the archive whose source_id column is the source list, "
                                    "e.g. \"SELECT source_id FROM gaiadr3.gaia_source WHERE has_xp_continuous = 'True' "
                                    "AND phot_g_mean_mag < 12\""),
        click.option("--from-apogee", type=click.Path(exists=True, dir_okay=False),
                     help="APOGEE allStar (or subset) file: its Gaia source ids (GAIAEDR3_SOURCE_ID)"),
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="folder for the batch files; a rerun skips the batches already there"),
        click.option("--format", "fmt", type=click.Choice(["csv", "ecsv", "fits", "votable"]), default="csv",
                     show_default=True),
        click.option("--tap-url", help="base URL of the Gaia archive (default: XPVAE_GAIA_TAP_URL, "
                                       "https://gea.esac.esa.int/)"),
        click.option("--retries", type=click.IntRange(0, 10), default=4, show_default=True,
                     help="retries per request on HTTP 5xx/429 and dropped connections (waits 2, 4, 8… s)"),
        click.option("--ingest", "then_ingest", is_flag=True, help="ingest the fetched files when done"),
        click.option("--wait", is_flag=True, help="with --ingest in stack mode: follow the ingest job"),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


@click.group("fetch")
def fetch_group() -> None:
    """Download from the Gaia archive (astroquery's TAP+ client): XP spectra through DataLink in batches of at
    most 5,000 sources, photometry through ADQL. Resumable: a rerun skips the batches already on disk."""


def _run(kind: str, source_ids, adql, from_apogee, out, fmt, tap_url, retries, then_ingest, wait) -> None:
    from ingest import fetch
    from ingest.readers.errors import ReaderError
    from shared.settings import get_settings
    try:
        archive = fetch.Archive(tap_url or get_settings().gaia_tap_url, retries=retries)
        ids = fetch.resolve_ids(source_ids, adql, from_apogee, archive)
        click.echo(f"{len(ids)} sources, {-(-len(ids) // fetch.DATALINK_MAX_IDS)} batch(es), from {archive.url}")
        run = fetch.fetch_xp if kind == "gaia-xp" else fetch.fetch_photometry
        result = run(archive, ids, out, fmt, progress=lambda done, total, message: click.echo(message))
    except fetch.FetchError as exc:
        _die(str(exc), EXIT_UNAVAILABLE if exc.transient else EXIT_FAILED)
    except (ValueError, OSError, ReaderError) as exc:    # a bad id file, an empty list, not an APOGEE file
        _die(str(exc), EXIT_USAGE)
    click.echo(fetch.describe(result, "XP spectra" if kind == "gaia-xp" else "photometry"))
    if result.empty:
        click.echo(f"{len(result.empty)} batch(es) came back empty: the archive has no data for those sources")
    if then_ingest and result.with_data:
        from xpvae.commands import _expand, _ingest
        _ingest(kind, _expand(tuple(str(p) for p in result.with_data)), wait)


@fetch_group.command("gaia-xp")
@source_options
def fetch_gaia_xp(**kw) -> None:
    """XP continuous spectra (DataLink RETRIEVAL_TYPE=XP_CONTINUOUS, one XP_CONTINUOUS_RAW file per batch zip)."""
    _run("gaia-xp", **kw)


@fetch_group.command("photometry")
@source_options
def fetch_photometry(**kw) -> None:
    """source_id, phot_g_mean_flux, phot_g/bp/rp_mean_mag, ra, dec from gaiadr3.gaia_source (ADQL, asynchronous)."""
    _run("photometry", **kw)

