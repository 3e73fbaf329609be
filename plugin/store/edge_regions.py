"""Regions on Qdrant Edge: the multivector's parameters and the two-stage plan as an Edge request
(`sketchtext.plugin.store.regions` explains both)."""

from __future__ import annotations

import numpy as np
import qdrant_edge as qe

from sketchtext.plugin.store.edge_convert import DISTANCES, edge_filter
from sketchtext.plugin.store.regions import RegionPlan


def region_params(dim: int) -> qe.EdgeVectorParams:
    """MaxSim multivector by dot product (its rows mix the global vector in, `regions.mixed_rows`, so they are not
    unit vectors and must not be normalised), never indexed (m=0: it only reranks), kept on disk (memory-mapped)."""
    return qe.EdgeVectorParams(
        size=dim,
        distance=DISTANCES["Dot"],
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        on_disk=True,
    )


def edge_region_request(plan: RegionPlan, params: qe.SearchParams) -> qe.QueryRequest:
    """The plan as one Edge query: prefetch by the global vector (filtered, with `params`), rerank by regions."""
    vector = np.asarray(plan.vector, dtype=np.float32).tolist()
    first = qe.Prefetch(
        limit=plan.candidates,
        query=qe.Query.Nearest(vector, using=plan.using),
        filter=edge_filter(plan.query_filter),
        params=params,
    )
    weights = plan.formula_weights()
    if weights is None:
        return qe.QueryRequest(
            limit=plan.limit,
            prefetches=[first],
            query=qe.Query.Nearest([vector], using=plan.regions_using),
            with_payload=True,
        )
    rerank = qe.Prefetch(
        limit=plan.candidates, prefetches=[first], query=qe.Query.Nearest([vector], using=plan.regions_using)
    )
    ex = qe.Expression
    formula = qe.Formula(
        ex.Sum(
            [
                ex.Mult([ex.Constant(weights[0]), ex.Variable("$score[0]")]),
                ex.Mult([ex.Constant(weights[1]), ex.Variable("$score[1]")]),
            ]
        )
    )
    return qe.QueryRequest(limit=plan.limit, prefetches=[first, rerank], query=formula, with_payload=True)
