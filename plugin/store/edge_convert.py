"""Between qdrant-client and Qdrant Edge: filters in, scored points and errors out.

Hosts and `build_filter` speak `qdrant_client.models`; Edge has its own types. One public way to build filters
stays (`sketchtext.plugin.store.base.build_filter`, or any `models.Filter` a host writes), translated here condition by
condition; results go back as qdrant-client `ScoredPoint`s, so both backends return the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from sketchtext.plugin.errors import QueryError, SketchTextError, StoreError, StoreUnavailableError

DISTANCES = {
    "Cosine": qe.Distance.Cosine,
    "Dot": qe.Distance.Dot,
    "Euclid": qe.Distance.Euclid,
    "Manhattan": qe.Distance.Manhattan,
}


def edge_filter(value: models.Filter | None) -> qe.Filter | None:
    """The Edge filter that selects the same points as a qdrant-client `Filter`."""
    if value is None:
        return None
    if not isinstance(value, models.Filter):
        raise QueryError(
            f"Expected a qdrant_client.models.Filter, got {type(value).__name__}; build one with build_filter."
        )
    min_should = None
    if value.min_should is not None:
        min_should = qe.MinShould(
            conditions=[_condition(c) for c in value.min_should.conditions], min_count=value.min_should.min_count
        )
    return qe.Filter(
        must=_conditions(value.must),
        should=_conditions(value.should),
        must_not=_conditions(value.must_not),
        min_should=min_should,
    )


def _conditions(value: Sequence[Any] | Any | None) -> list[Any] | None:
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]  # qdrant-client also takes one condition alone
    return [_condition(c) for c in items]


def _condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        return _field(condition)
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.IsNullCondition):
        return qe.IsNullCondition(condition.is_null.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition({_point_id(i) for i in condition.has_id})
    if isinstance(condition, models.HasVectorCondition):
        return qe.HasVectorCondition(condition.has_vector)
    if isinstance(condition, models.SliceCondition):
        return qe.SliceCondition(condition.slice.total, condition.slice.index)  # type: ignore[attr-defined]  # not in 0.9.0 stubs
    if isinstance(condition, models.NestedCondition):
        return qe.NestedCondition(condition.nested.key, _required(edge_filter(condition.nested.filter)))
    raise QueryError(
        f"The embedded Qdrant Edge store cannot run a {type(condition).__name__} filter condition; "
        "use field, is_empty, is_null, has_id, has_vector or nested conditions, "
        "or a Qdrant server (SKETCHTEXT_STORE__URL)."
    )


def _field(condition: models.FieldCondition) -> qe.FieldCondition:
    geo_box = condition.geo_bounding_box
    geo_radius = condition.geo_radius
    geo_polygon = condition.geo_polygon
    count = condition.values_count
    return qe.FieldCondition(
        key=condition.key,
        match=_match(condition.match) if condition.match is not None else None,
        range=_range(condition.range) if condition.range is not None else None,
        geo_bounding_box=qe.GeoBoundingBox(_geo(geo_box.top_left), _geo(geo_box.bottom_right)) if geo_box else None,
        geo_radius=qe.GeoRadius(_geo(geo_radius.center), geo_radius.radius) if geo_radius else None,
        geo_polygon=qe.GeoPolygon(
            [_geo(p) for p in geo_polygon.exterior.points],
            [[_geo(p) for p in ring.points] for ring in geo_polygon.interiors] if geo_polygon.interiors else None,
        )
        if geo_polygon
        else None,
        values_count=qe.ValuesCount(lt=count.lt, gt=count.gt, lte=count.lte, gte=count.gte) if count else None,
        is_empty=condition.is_empty,
        is_null=condition.is_null,
    )


def _match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        values: Any = list(match.any)
        return qe.MatchAny(values)
    if isinstance(match, models.MatchExcept):
        excluded: Any = list(match.except_)
        return qe.MatchExcept(excluded)  # positional: the binding names it `except`
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, models.MatchPrefix):
        return qe.MatchPrefix(match.prefix)
    raise QueryError(
        f"The embedded Qdrant Edge store cannot run a {type(match).__name__} match; "
        "use value, any, except, text, phrase or prefix."
    )


def _range(value: Any) -> Any:
    if isinstance(value, models.DatetimeRange):
        return qe.RangeDateTime(gte=_iso(value.gte), gt=_iso(value.gt), lte=_iso(value.lte), lt=_iso(value.lt))
    return qe.RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _geo(point: models.GeoPoint) -> qe.GeoPoint:
    return qe.GeoPoint(lon=point.lon, lat=point.lat)


def _required(value: qe.Filter | None) -> qe.Filter:
    return value if value is not None else qe.Filter()


def _point_id(value: int | str | uuid.UUID) -> int | str:
    return str(value) if isinstance(value, uuid.UUID) else value


@contextmanager
def edge_errors(what: str, path: Path) -> Iterator[None]:
    """Turn Qdrant Edge's exceptions (plain `Exception` with a message) into the project's errors."""
    try:
        yield
    except SketchTextError:
        raise
    except ValueError as exc:
        raise StoreError(
            f"Qdrant Edge refused to {what}: {exc}. Point ids must be unsigned integers or UUIDs."
        ) from exc
    except Exception as exc:
        text = str(exc)
        if "WouldBlock" in text or "Resource temporarily unavailable" in text:
            raise StoreUnavailableError(
                f"The embedded store {path} is in use by another process. One process at a time may open it: "
                "stop the other one, or run a Qdrant server and set SKETCHTEXT_STORE__URL."
            ) from exc
        raise StoreError(f"Qdrant Edge failed to {what} ({path}): {text}") from exc


def scored_point(point: qe.ScoredPoint) -> models.ScoredPoint:
    """An Edge hit as qdrant-client's `ScoredPoint` (UUID ids as strings, as qdrant-client returns them)."""
    pid = point.id
    return models.ScoredPoint(
        id=str(pid) if isinstance(pid, uuid.UUID) else pid,
        version=point.version,
        score=point.score,
        payload=point.payload,
    )
