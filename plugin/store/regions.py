"""Photo regions in Qdrant: a named multivector beside the global vector, and the two-stage query that uses it.

Each point may hold, beside its global photo vector g, one row per region of the photo (the grid cells the method's
region-aware triplet L_RT trains on, projected into the joint space, L2-normalised: r_i), compared by MaxSim (dot
product) with its HNSW index off (`m=0`: regions only rerank). A query runs in one round trip through the Query API:

    prefetch: the top `prefetch` points by the global vector, with the query's filters
    query:    those candidates reranked by (1 − w)·(q·g) + w·max_i (q·r_i), w the region weight

The rows are stored mixed, m_i = (1 − w₀)·g + w₀·r_i with w₀ the collection's mix (`REGION_WEIGHT` when it was
made), so q·m_i = (1 − w₀)·(q·g) + w₀·(q·r_i) and one MaxSim over the rows *is* the weighted rerank at w = w₀: no
second stage, no formula. Any other weight is still exact, as a formula over the global score G and the rows'
MaxSim S: (1 − w/w₀)·G + (w/w₀)·S. Collections made before the mix hold the plain regions (w₀ = 1).

`region_request` builds that request as qdrant-client models, so a host runs it with its own `QdrantClient`
(`query_points(**encoded.request())`); the Edge store translates the same plan (`edge_regions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sketchtext.plugin.errors import QueryError

if TYPE_CHECKING:
    from qdrant_client import models

REGIONS_KEY = "sketchtext_regions"  # collection metadata: the region grid of a store's vector (absent: no regions)
REGIONS_VECTOR = "sketchtext-regions"  # the multivector's name beside an unnamed global vector
MIX_KEY = "sketchtext_region_mix"  # collection metadata: w₀ of the stored rows (absent beside a grid: plain regions)
# The region score's share, chosen on the miniature's val split (RegionSearch below): the rerank of new collections.
REGION_WEIGHT = 0.1
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
    0.5 46.5, 1.0 32.8): MaxSim alone loses, a small share of it helps a little (README, "Region-aware search").
    50 candidates gave the same Acc@1/5/10 on val as 100 in every mode, at half the rerank's reads."""

    prefetch: int = 50
    weight: float = REGION_WEIGHT

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
    mix: float  # w₀ of the collection's stored rows (1.0: plain regions)

    @property
    def candidates(self) -> int:
        return max(self.search.prefetch, self.limit)

    def formula_weights(self) -> tuple[float, float] | None:
        """(global score, rows' MaxSim) weights of the formula that gives the asked weight from rows stored at the
        collection's mix; None when the rows' MaxSim alone already is it (the asked weight is the mix)."""
        share = self.search.weight / self.mix
        return None if math.isclose(share, 1.0) else (1.0 - share, share)


def mixed_rows(vectors: NDArray[np.float32], regions: NDArray[np.float32], mix: float) -> NDArray[np.float32]:
    """The rows a collection stores for photos (N, D) with their regions (N, R, D): (1 − mix)·g + mix·r_i."""
    if mix == 1.0:
        return np.asarray(regions, np.float32)
    return ((1.0 - mix) * vectors[:, None, :] + mix * regions).astype(np.float32)


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
