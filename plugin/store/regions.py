"""Photo regions in Qdrant: a named multivector beside the global vector, and the two-stage query that uses it.

Each point may hold, beside its global photo vector, the photo's region embeddings (the grid cells the method's
region-aware triplet L_RT trains on, projected into the joint space, L2-normalised) as one multivector compared by
MaxSim. Its HNSW index is off (`m=0`): regions only rerank. A query runs in one round trip through the Query API:

    prefetch: the top `prefetch` points by the global vector, with the query's filters
    query:    those candidates reranked by MaxSim of the query vector (a one-vector multivector) against their regions,
              or, with `weight` < 1, by (1 − weight)·global score + weight·MaxSim (a formula over both stages)

`region_request` builds that request as qdrant-client models, so a host runs it with its own `QdrantClient`
(`query_points(**encoded.request_kwargs())`); the Edge store translates the same plan (`edge_regions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import QueryError

if TYPE_CHECKING:
    from qdrant_client import models

REGIONS_KEY = "sketchtext_regions"  # collection metadata: the region grid of a store's vector (absent: no regions)
REGIONS_VECTOR = "sketchtext-regions"  # the multivector's name beside an unnamed global vector
DEFAULT_GRID = 2  # cells per side when a model names none (the method's MethodCfg.region_grid default)


def regions_name(vector_name: str | None) -> str:
    """The multivector that holds the regions of the vector `vector_name` (None: the unnamed vector)."""
    return f"{vector_name}-regions" if vector_name else REGIONS_VECTOR


@dataclass(frozen=True)
class RegionSearch:
    """How a regions query reranks: candidates taken by the global vector, and the region score's share.

    `weight` 1.0 ranks the candidates by MaxSim alone; below 1 it mixes the global score in. The weight was chosen
    by `sketchtext eval --split val --region-weight W` with the bundled demo checkpoint on the miniature's val split
    (best mode, late fusion, Acc@1: 48.7 % without regions; W = 0.05 49.1, 0.1 50.0, 0.15 49.7, 0.2 49.9, 0.3 49.4,
    0.5 46.5, 1.0 32.8): MaxSim alone loses, a small share of it helps a little (README, "Region-aware search")."""

    prefetch: int = 100
    weight: float = 0.1

    def __post_init__(self) -> None:
        if self.prefetch < 1:
            raise QueryError(f"A regions query needs at least one prefetched candidate, got prefetch={self.prefetch}.")
        if not 0.0 < self.weight <= 1.0:
            raise QueryError(f"The region weight must be in (0, 1], got {self.weight}; 1 reranks by regions alone.")


@dataclass(frozen=True)
class RegionPlan:
    """One two-stage query, backend-neutral: what both stores and a host's client build their request from."""

    vector: NDArray[np.float32]
    using: str | None  # the global vector
    regions_using: str
    query_filter: models.Filter | None
    limit: int
    search: RegionSearch

    @property
    def candidates(self) -> int:
        return max(self.search.prefetch, self.limit)

    def formula_weights(self) -> tuple[float, float] | None:
        """(global, region) weights of the mixing formula; None when the rerank is MaxSim alone."""
        return None if self.search.weight >= 1.0 else (1.0 - self.search.weight, self.search.weight)


def region_request(plan: RegionPlan) -> dict[str, Any]:
    """The plan as `QdrantClient.query_points` / `QueryRequest` keyword arguments (qdrant-client models)."""
    from qdrant_client import models

    vector = np.asarray(plan.vector, dtype=np.float32).tolist()
    first = models.Prefetch(query=vector, using=plan.using, filter=plan.query_filter, limit=plan.candidates)
    weights = plan.formula_weights()
    if weights is None:
        return {"prefetch": first, "query": [vector], "using": plan.regions_using, "limit": plan.limit}
    rerank = models.Prefetch(prefetch=first, query=[vector], using=plan.regions_using, limit=plan.candidates)
    formula = models.FormulaQuery(
        formula=models.SumExpression(
            sum=[
                models.MultExpression(mult=[weights[0], "$score[0]"]),
                models.MultExpression(mult=[weights[1], "$score[1]"]),
            ]
        )
    )
    return {"prefetch": [first, rerank], "query": formula, "limit": plan.limit}


def maxsim_rerank(
    query: NDArray[np.float32],
    gallery: NDArray[np.float32],
    regions: NDArray[np.float32],
    *,
    limit: int,
    search: RegionSearch,
    allowed: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The same two stages in numpy, for one query over unit vectors: gallery (N, D), regions (N, R, D); `allowed`
    masks what the filter admits. Returns the indices and scores, best first (evaluation runs this)."""
    scores = gallery @ query
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    n = min(max(search.prefetch, limit), int(np.isfinite(scores).sum()))
    candidates = np.argsort(-scores, kind="stable")[:n]
    region_scores = (regions[candidates] @ query).max(axis=1)
    w = search.weight
    final = region_scores if w >= 1.0 else (1.0 - w) * scores[candidates] + w * region_scores
    order = np.argsort(-final, kind="stable")[:limit]
    return candidates[order], final[order].astype(np.float32)
