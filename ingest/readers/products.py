"""Gaia DataLink product names (docs/data-formats.md §1).

The archive names each file of a DataLink download after its product: ``<PRODUCT>-Gaia DR3 <source_id>.<ext>``
(one file per source), ``<PRODUCT>_COMBINED.<ext>`` or ``<PRODUCT>_RAW.<ext>`` (one file for all sources), or
``<PRODUCT>.<ext>``; ext is csv, ecsv, fits or xml (VOTable). Only ``XP_CONTINUOUS`` holds the spectra the
pipeline ingests; the other products (XP_SAMPLED, MCMC_GSPPHOT, MCMC_MSC, EPOCH_PHOTOMETRY, RVS, …) are
recognised by name so that they can be passed over without being read.
"""
from __future__ import annotations

import re

XP_PRODUCT = "XP_CONTINUOUS"
# DR3 retrieval types (astroquery's Gaia.VALID_DATALINK_RETRIEVAL_TYPES); DR4 adds more, matched by pattern
KNOWN_PRODUCTS = ("XP_CONTINUOUS", "XP_SAMPLED", "MCMC_GSPPHOT", "MCMC_MSC", "EPOCH_PHOTOMETRY", "RVS")
EXTENSIONS = ("csv", "ecsv", "fits", "xml", "vot", "votable", "json")

_NAME = re.compile(r"^(?P<product>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*?)"
                   r"(?P<tail>-Gaia (?:DR|EDR|FPR)\d+ \d+|_COMBINED|_RAW)?"
                   rf"\.(?:{'|'.join(EXTENSIONS)})(?:\.gz)?$")


def product_of(name: str) -> str | None:
    """The DataLink product a file name says it holds, or None if the name is not in the archive's pattern.

    A bare ``<PRODUCT>.<ext>`` only counts for the known DR3 products (so that ``PHOTOMETRY.csv`` or ``DATA.fits``
    of the user's own making are not mistaken for archive products).
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    m = _NAME.match(base)
    if m is None:
        return None
    product = m.group("product")
    if m.group("tail") is None and product not in KNOWN_PRODUCTS:
        return None
    return product


def is_other_product(name: str) -> bool:
    """True when the name says it is a DataLink product other than the XP continuous spectra."""
    product = product_of(name)
    return product is not None and product != XP_PRODUCT


def describe_products(counts: dict[str, int]) -> str:
    """``XP_SAMPLED (3 files), MCMC_GSPPHOT (1 file)``, largest first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{p} ({n} file{'s' if n != 1 else ''})" for p, n in items)
