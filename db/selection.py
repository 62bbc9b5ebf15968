"""Which stars a training, inference or analysis job works on, as one small JSON-able object, and its SQL.

A Selection becomes a WHERE clause over ``xp_spectra s`` (with ``photometry p`` left-joined); values are
validated and inlined as integers, so the same SQL text serves SQLAlchemy queries and PostgreSQL's
``COPY (SELECT …) TO STDOUT``. Rows are always ordered by source_id.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from shared.quality import FLAG_NAMES

ID_TABLE = "_selection_ids"     # temp table holding an explicit id list (see Selection.source_ids)


@dataclass(frozen=True)
class Selection:
    """Stars to read. Every criterion is ANDed.

    source_id_lo / source_id_hi: inclusive source_id range (shards use it).
    require_photometry: only stars with a G-band flux in ``photometry``.
    require_both_bands: only stars with both BP and RP.
    labelled: True = only stars with a primary APOGEE match; False = only stars without; None = either.
    quality: one flag name or a tuple of them, all required on the primary APOGEE row — 'pristine', 'good'
        (label quality, docs/science.md §9.1), 'giant', 'cool_giant' (log g / Teff cuts), 'high_alpha'.
        E.g. ('pristine', 'cool_giant') = the abstract's sample. Implies labelled.
    limit: at most this many stars (the lowest source ids).
    source_ids: an explicit list of ids (combined with the rest); kept out of ``to_dict`` when None.
    """
    source_id_lo: int | None = None
    source_id_hi: int | None = None
    require_photometry: bool = True
    require_both_bands: bool = True
    labelled: bool | None = None
    quality: str | tuple[str, ...] | None = None
    limit: int | None = None
    source_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("source_id_lo", "source_id_hi", "limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value):
                raise ValueError(f"selection: {name} must be an integer, not {value!r}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"selection: limit must be >= 0, not {self.limit}")
        for flag in self.quality_flags:
            if flag not in FLAG_NAMES:
                raise ValueError(f"selection: unknown quality {flag!r}; use one of {', '.join(FLAG_NAMES)}")
        if self.source_ids is not None and not isinstance(self.source_ids, tuple):
            object.__setattr__(self, "source_ids", tuple(int(i) for i in self.source_ids))

    @property
    def quality_flags(self) -> tuple[str, ...]:
        if self.quality is None:
            return ()
        return (self.quality,) if isinstance(self.quality, str) else tuple(self.quality)

    def replace(self, **changes: Any) -> "Selection":
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return Selection(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(data["quality"], tuple):
            data["quality"] = list(data["quality"])
        if data["source_ids"] is None:
            del data["source_ids"]
        else:
            data["source_ids"] = list(data["source_ids"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Selection":
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"selection: unknown field(s) {sorted(unknown)}")
        if isinstance(data.get("quality"), list):
            data["quality"] = tuple(data["quality"])
        if data.get("source_ids") is not None:
            data["source_ids"] = tuple(int(i) for i in data["source_ids"])
        return cls(**data)

    @classmethod
    def everything(cls) -> "Selection":
        """Every stored spectrum, with or without photometry or both bands."""
        return cls(require_photometry=False, require_both_bands=False)

    # --- SQL ---------------------------------------------------------------------------------------------------
    def from_clause(self, with_correlations: bool = False) -> str:
        """FROM … for the aliases s (xp_spectra) and p (photometry), and c (xp_correlations, left-joined) with
        ``with_correlations``; joins the id temp table when needed."""
        ids = f"JOIN {ID_TABLE} i ON i.source_id = s.source_id " if self.source_ids is not None else ""
        corr = (f" LEFT JOIN xp_correlations c ON c.source_id = s.source_id{self.range_on('c')}"
                if with_correlations else "")
        return f"xp_spectra s {ids}LEFT JOIN photometry p ON p.source_id = s.source_id{self.range_on('p')}{corr}"

    def range_on(self, alias: str) -> str:
        """The source_id range repeated on a joined table's alias: the planner does not carry a range across
        a join, and without it a merge join scans the joined table (every partition) from its first row."""
        lo = "" if self.source_id_lo is None else f" AND {alias}.source_id >= {int(self.source_id_lo)}"
        return lo + ("" if self.source_id_hi is None else f" AND {alias}.source_id <= {int(self.source_id_hi)}")

    def where_clause(self) -> str:
        """The conditions (``TRUE`` when none), with every value inlined as a validated integer."""
        cond = []
        if self.source_id_lo is not None:
            cond.append(f"s.source_id >= {int(self.source_id_lo)}")
        if self.source_id_hi is not None:
            cond.append(f"s.source_id <= {int(self.source_id_hi)}")
        if self.require_photometry:
            cond.append("p.phot_g_mean_flux IS NOT NULL")
        if self.require_both_bands:
            cond.append("NOT s.bp_missing AND NOT s.rp_missing")
        flags = "".join(f" AND a.{f}" for f in self.quality_flags)
        labelled_sql = ("EXISTS (SELECT 1 FROM apogee_labels a WHERE a.gaia_source_id = s.source_id "
                        f"AND a.is_primary{flags})")
        if flags or self.labelled:
            cond.append(labelled_sql)
        if self.labelled is False:
            if flags:
                raise ValueError("selection: labelled=False cannot be combined with a quality flag")
            cond.append("NOT " + labelled_sql)
        return " AND ".join(cond) if cond else "1=1"

    def sql(self, select: str, with_correlations: bool = False) -> str:
        """``SELECT {select} FROM … WHERE … ORDER BY s.source_id [LIMIT n]``; ``with_correlations`` left-joins
        xp_correlations as c (see ``from_clause``)."""
        limit = f" LIMIT {int(self.limit)}" if self.limit is not None else ""
        return (f"SELECT {select} FROM {self.from_clause(with_correlations)} WHERE {self.where_clause()} "
                f"ORDER BY s.source_id{limit}")
