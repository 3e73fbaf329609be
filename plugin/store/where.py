"""Narrowing by any payload field: `--where brand=acme`, `{"extra.season": ["winter", "autumn"]}`, number ranges.

One place maps a `where` mapping to Qdrant conditions, checked against what the collection holds (its embedded
assets' SQL rows): an unknown field or value is refused with the valid ones listed, never a silent "no hits".
Values: one value (match), a list (any of them), or for numbers a range `{"gte": 10, "lt": 50}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from sketchtext.plugin.db import CATALOG_FIELDS, Asset, AssetStatus, MetadataDB
from sketchtext.plugin.errors import QueryError

if TYPE_CHECKING:
    from qdrant_client import models

Scalar = str | int | float | bool
WhereValue = Scalar | Sequence[Scalar] | Mapping[str, float]
Where = Mapping[str, WhereValue]
RANGE_KEYS = ("gt", "gte", "lt", "lte")
EXTRA = "extra."
SHOWN_VALUES = 20  # values listed in a refusal


def parse_where(items: Sequence[str]) -> dict[str, WhereValue]:
    """The command line's `FIELD=VALUE` items: `a,b` for any of them, `LOW..HIGH` for a range (either end open).

    Values stay text here; `where_filter` reads them as numbers where the field holds numbers."""
    where: dict[str, WhereValue] = {}
    for item in items:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise QueryError(f"--where {item!r} is not FIELD=VALUE; e.g. --where brand=acme or --where price=10..50.")
        if name in where:
            raise QueryError(f"--where names {name!r} twice; give several values as {name}=a,b.")
        if ".." in value:
            low, _, high = value.partition("..")
            where[name] = {k: v for k, v in (("gte", low.strip()), ("lte", high.strip())) if v}  # type: ignore[misc]
        else:
            values = [v.strip() for v in value.split(",")]
            where[name] = values[0] if len(values) == 1 else values
    return where


def known_values(db: MetadataDB, collection: str) -> dict[str, list[Scalar]]:
    """Every filterable field of the collection's embedded assets (`extra.` for sidecar fields) and its values."""
    seen: dict[str, set[Scalar]] = {}
    columns = [getattr(Asset, name) for name in CATALOG_FIELDS]
    with db.session() as session:
        rows = session.execute(
            select(*columns, Asset.extra).where(Asset.collection == collection, Asset.status == AssetStatus.EMBEDDED)
        )
        for row in rows:
            *fields, extra = row
            pairs = list(zip(CATALOG_FIELDS, fields, strict=True))
            pairs += [(EXTRA + k, v) for k, v in (extra or {}).items()]
            for name, value in pairs:
                for one in value if isinstance(value, list) else [value]:
                    if isinstance(one, Scalar) and not (isinstance(one, float) and math.isnan(one)):
                        seen.setdefault(name, set()).add(one)
    return {name: sorted(values, key=lambda v: (type(v).__name__, v)) for name, values in sorted(seen.items())}


def values_stamp(db: MetadataDB, collection: str) -> tuple[Any, ...]:
    """What changes whenever `known_values` would: the embedded assets' count and latest change (one cheap query)."""
    with db.session() as session:
        row = session.execute(
            select(func.count(), func.max(Asset.updated_at)).where(
                Asset.collection == collection, Asset.status == AssetStatus.EMBEDDED
            )
        ).one()
    return tuple(row)


def resolve_field(name: str, known: Mapping[str, Sequence[Scalar]]) -> str:
    """The payload key of a field name: a catalogue field, `extra.X`, or a bare sidecar field `X`."""
    for candidate in (name, EXTRA + name):
        if candidate in known and (candidate in CATALOG_FIELDS or candidate.startswith(EXTRA)):
            return candidate
    fields = ", ".join(known) or "none yet: ingest a catalog first"
    raise QueryError(f"Unknown filter field {name!r}; the collection's fields are: {fields}.")


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(field: str, value: object) -> float | int:
    """A number given as a number or as text (the command line's values are text)."""
    if is_number(value):
        return value  # type: ignore[return-value]
    try:
        number = float(str(value))
    except ValueError:
        raise QueryError(f"{field} holds numbers; {value!r} is not one.") from None
    return int(number) if number.is_integer() and "." not in str(value) else number


def as_value(field: str, value: object, values: Sequence[Scalar]) -> Scalar:
    """One match value read as the field's values are typed, and refused unless the collection has it."""
    if values and all(is_number(v) for v in values):
        value = as_number(field, value)
    elif values and all(isinstance(v, bool) for v in values) and str(value).lower() in ("true", "false"):
        value = str(value).lower() == "true"
    if not isinstance(value, Scalar):
        raise QueryError(f"{field}: give a value, a list of values or a range, got {value!r}.")
    if value not in values:
        shown = ", ".join(str(v) for v in values[:SHOWN_VALUES])
        more = f" (and {len(values) - SHOWN_VALUES} more)" if len(values) > SHOWN_VALUES else ""
        raise QueryError(f"Unknown {field} {value!r}; the collection has: {shown}{more}.")
    return value


def condition(field: str, key: str, value: WhereValue, values: Sequence[Scalar]) -> models.FieldCondition:
    """One Qdrant condition: match one value, any of several, or a numeric range."""
    from qdrant_client import models

    if isinstance(value, Mapping):
        if not value or set(value) - set(RANGE_KEYS):
            raise QueryError(f"A range for {field} takes {', '.join(RANGE_KEYS)}, got {dict(value)!r}.")
        if not all(is_number(v) for v in values):
            raise QueryError(f"{field} holds text, so it has no range; match values instead (--where {field}=a,b).")
        bounds = {k: as_number(field, v) for k, v in value.items()}
        return models.FieldCondition(key=key, range=models.Range(**bounds))
    listed = [value] if isinstance(value, Scalar) else list(value)
    if not listed:
        raise QueryError(f"{field} is an empty list, which would match nothing; leave it out to match all.")
    checked = [as_value(field, v, values) for v in listed]
    if any(isinstance(v, float) for v in checked):  # Qdrant matches integers, text and booleans; a float is a range
        if len(checked) > 1:
            raise QueryError(f"{field}: match one fractional number at a time, or give a range.")
        return models.FieldCondition(key=key, range=models.Range(gte=float(checked[0]), lte=float(checked[0])))
    if len(checked) == 1:
        return models.FieldCondition(key=key, match=models.MatchValue(value=checked[0]))  # type: ignore[arg-type]
    return models.FieldCondition(key=key, match=models.MatchAny(any=checked))  # type: ignore[arg-type]


def where_filter(
    where: Where | None, known: Mapping[str, Sequence[Scalar]], *, prefix: str = ""
) -> models.Filter | None:
    """The Qdrant filter (AND of its fields) for a `where` mapping, checked against `known_values`; `prefix` addresses
    fields nested under sketchtext's own object in a host's points. The one mapping, for search and delete alike."""
    from qdrant_client import models

    if not where:
        return None
    if not isinstance(where, Mapping):
        raise QueryError(f"where must map field names to values, got {type(where).__name__}.")
    must: list[Any] = []
    for name, value in where.items():
        key = resolve_field(str(name), known)
        must.append(condition(str(name), prefix + key, value, known[key]))
    return models.Filter(must=must)


def all_of(*filters: models.Filter | None) -> models.Filter | None:
    """The filters given, all of them (AND); None when there are none."""
    from qdrant_client import models

    present: list[Any] = [f for f in filters if f is not None]
    return None if not present else present[0] if len(present) == 1 else models.Filter(must=present)
