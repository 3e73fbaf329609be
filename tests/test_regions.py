"""Region-aware search: regions stored beside the global vector in both backends, the two-stage query (prefetch by
the global vector with the filters, rerank by MaxSim over regions) against a numpy brute force, ingest writing
regions with a checkpoint, and a host running the same request with its own QdrantClient."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from qdrant_client import QdrantClient

from sketchtext.plugin.errors import ConfigError, QueryError
from sketchtext.plugin.facade import SketchTextPlugin
from sketchtext.plugin.ingest.queued import BatchJob
from sketchtext.plugin.model.checkpoint import save_checkpoint
from sketchtext.plugin.model.composer import ComposerCfg, build_composer, layernorm_state
from sketchtext.plugin.model.spec import ModelSpec, create_clip
from sketchtext.plugin.search import SketchTextQuery
from sketchtext.plugin.settings import Settings
from sketchtext.plugin.store.base import build_filter
from sketchtext.plugin.store.edge import EdgeStore
from sketchtext.plugin.store.qdrant import QdrantStore, open_local
from sketchtext.plugin.store.regions import REGION_WEIGHT, RegionSearch, maxsim_rerank
from tests.conftest import TINY_SPEC

N, R, D = 60, 4, 8
CATEGORIES = ("boot", "bag", "lamp")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def points() -> tuple[list[uuid.UUID], np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(7)
    ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}") for i in range(N)]
    return ids, unit(rng.normal(size=(N, D))), unit(rng.normal(size=(N, R, D))), [CATEGORIES[i % 3] for i in range(N)]


@pytest.fixture(params=["edge", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path, points) -> Iterator[EdgeStore | QdrantStore]:
    ids, vectors, regions, categories = points
    opened: EdgeStore | QdrantStore = (
        EdgeStore(tmp_path / "edge") if request.param == "edge" else QdrantStore(open_local(tmp_path), owns_client=True)
    )
    with opened:
        opened.ensure_collection("c", D, "m1", region_grid=2)
        opened.ensure_collection("plain", D, "m1")
        payloads = [{"key": f"p{i}", "category": c} for i, c in enumerate(categories)]
        opened.upsert("c", ids, vectors, payloads, regions=regions)
        opened.upsert("plain", ids, vectors, payloads)
        yield opened


def stored_vectors(store: EdgeStore | QdrantStore, pid: uuid.UUID, collection: str = "c") -> dict[str, list]:
    if isinstance(store, EdgeStore):
        return dict(store.shard(collection).retrieve([str(pid)], with_payload=False, with_vector=True)[0].vector)
    return dict(store.client.retrieve(collection, [str(pid)], with_vectors=True)[0].vector)  # type: ignore[arg-type]


def brute_force(query, vectors, regions, allowed, prefetch, limit, weight) -> tuple[list[int], np.ndarray]:
    """Written out here on purpose: the top `prefetch` by cosine among the allowed, then MaxSim (or the mix)."""
    cosine = vectors @ query
    candidates = [i for i in np.argsort(-cosine) if allowed[i]][:prefetch]
    region = np.array([max(float(r @ query) for r in regions[i]) for i in candidates])
    final = region if weight == 1.0 else (1 - weight) * cosine[candidates] + weight * region
    order = np.argsort(-final)[:limit]
    return [candidates[i] for i in order], final[order]


def test_regions_round_trip_and_are_recorded_in_the_binding(store, points) -> None:
    ids, vectors, regions, _ = points
    assert store.region_grid("c") == 2 and store.region_grid("plain") is None
    assert store.region_mix("c") == REGION_WEIGHT and store.region_mix("plain") is None
    stored = stored_vectors(store, ids[5])
    np.testing.assert_allclose(np.asarray(stored[""]), vectors[5], atol=1e-6)
    rows = (1 - REGION_WEIGHT) * vectors[5] + REGION_WEIGHT * regions[5]  # each region mixed with the global vector
    np.testing.assert_allclose(np.asarray(stored[store.regions_name]), rows, atol=1e-6)
    assert store.vector_size("c") == D


def legacy_collection(store: EdgeStore | QdrantStore, points) -> None:
    """A collection as regions were stored before the mix: plain regions, cosine, no mix recorded."""
    import qdrant_edge as qe
    from qdrant_client import models

    ids, vectors, regions, categories = points
    metadata = {store.binding_field: "m1", store.regions_field: 2}
    if isinstance(store, EdgeStore):
        maxsim = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim)
        cells = qe.EdgeVectorParams(size=D, distance=qe.Distance.Cosine, multivector_config=maxsim)
        store.create_collection("legacy", {"": (D, "Cosine")}, metadata, multivectors={store.regions_name: cells})
    else:
        maxsim_config = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
        config = {
            "": models.VectorParams(size=D, distance=models.Distance.COSINE),
            store.regions_name: models.VectorParams(
                size=D, distance=models.Distance.COSINE, multivector_config=maxsim_config
            ),
        }
        store.client.create_collection("legacy", vectors_config=config, metadata=metadata)
    payloads = [{"key": f"p{i}", "category": c} for i, c in enumerate(categories)]
    store.upsert("legacy", ids, vectors, payloads, regions=regions)


@pytest.mark.parametrize("weight", [REGION_WEIGHT, 1.0, 0.4])
def test_two_stage_query_equals_a_numpy_maxsim_rerank_of_the_prefetched(store, points, weight: float) -> None:
    ids, vectors, regions, categories = points
    queries = unit(np.random.default_rng(3).normal(size=(5, D)))
    search = RegionSearch(prefetch=15, weight=weight)
    found = store.query_regions_batch("c", [(q, None, 10) for q in queries], search)
    reordered = 0
    for query, hits in zip(queries, found, strict=True):
        expected, scores = brute_force(query, vectors, regions, [True] * N, 15, 10, weight)
        assert [str(h.id) for h in hits] == [str(ids[i]) for i in expected]
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
        library, library_scores = maxsim_rerank(query, vectors, regions, limit=10, search=search)
        assert list(library) == expected and np.allclose(library_scores, scores, atol=1e-6)
        reordered += [str(h.id) for h in hits] != [str(ids[i]) for i in np.argsort(-(vectors @ query))[:10]]
    assert reordered == len(queries)  # the rerank changes the global order: the test would see a no-op


@pytest.mark.parametrize("weight", [REGION_WEIGHT, 1.0, 0.4])
def test_filters_apply_in_the_prefetch(store, points, weight: float) -> None:
    ids, vectors, regions, categories = points
    query = unit(np.random.default_rng(4).normal(size=D))
    allowed = [c == "lamp" for c in categories]
    hits = store.query_regions_batch(
        "c", [(query, build_filter({"category": "lamp"}), 8)], RegionSearch(prefetch=12, weight=weight)
    )[0]
    expected, _ = brute_force(query, vectors, regions, allowed, 12, 8, weight)
    assert [str(h.id) for h in hits] == [str(ids[i]) for i in expected]
    assert {h.payload["category"] for h in hits} == {"lamp"}  # type: ignore[index]


@pytest.mark.parametrize("weight", [REGION_WEIGHT, 1.0])
def test_a_collection_made_before_the_mix_is_still_reranked_exactly(store, points, weight: float) -> None:
    ids, vectors, regions, _ = points
    legacy_collection(store, points)
    assert store.region_mix("legacy") == 1.0
    np.testing.assert_allclose(
        np.asarray(stored_vectors(store, ids[2], "legacy")[store.regions_name]), regions[2], atol=1e-6
    )
    query = unit(np.random.default_rng(5).normal(size=D))
    hits = store.query_regions_batch("legacy", [(query, None, 10)], RegionSearch(prefetch=15, weight=weight))[0]
    expected, scores = brute_force(query, vectors, regions, [True] * N, 15, 10, weight)
    assert [str(h.id) for h in hits] == [str(ids[i]) for i in expected]
    np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)


def test_a_collection_without_regions_refuses_a_regions_query(store) -> None:
    with pytest.raises(QueryError, match="holds no photo regions.*--regions"):
        store.query_regions_batch("plain", [(np.ones(D, np.float32), None, 5)], RegionSearch())


def test_region_search_refuses_bad_settings() -> None:
    with pytest.raises(QueryError, match="weight"):
        RegionSearch(weight=0.0)
    with pytest.raises(QueryError, match="prefetch"):
        RegionSearch(prefetch=0)


def test_encoder_regions_come_from_the_same_pass_as_the_global_vector(tiny_encoder, catalog: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(catalog.rglob("item*"))][:3]
    pixels = tiny_encoder.image_pixels(images)
    pooled, regions = tiny_encoder.encode_image_regions(pixels)
    np.testing.assert_allclose(pooled, tiny_encoder.encode_image_tensors(pixels), atol=1e-5)
    assert regions.shape == (3, 4, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(regions, axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(regions[:, 0], regions[:, 1])  # cells see different parts of the photo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _, tokenizer = create_clip(ModelSpec.parse(TINY_SPEC))
    torch.manual_seed(2)
    composer = build_composer(model, tokenizer, ComposerCfg())
    with torch.no_grad():
        for param in [*layernorm_state(model).values(), *composer.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    config = {"base": {"spec": TINY_SPEC, "fingerprint": "sketchtext-tiny@random-seed0"}, "composer": {}}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), model, composer, config).path


def plugin_settings(tmp_path: Path, checkpoint: Path | None, **store: object) -> Settings:
    model = {"spec": TINY_SPEC, "device": "cpu", "precision": "fp32", "checkpoint": checkpoint, "batch_size": 4}
    return Settings(data_dir=tmp_path / "data", model=model, store=store)


def test_a_checkpoint_ingests_regions_and_searches_them(checkpoint: Path, catalog: Path, tmp_path: Path) -> None:
    sketch = catalog / "shoes" / "item0.png"
    with SketchTextPlugin(plugin_settings(tmp_path, checkpoint)) as plugin:
        assert plugin.ingest(catalog).as_dict()["embedded"] == 6
        assert plugin.store.region_grid(plugin.collection) == 2  # on by default with a checkpoint
        plain = plugin.search(SketchTextQuery(sketch=sketch, text="in red", limit=6))
        reranked = plugin.search(SketchTextQuery(sketch=sketch, text="in red", limit=6, regions=True))
        assert {h.key for h in plain} == {h.key for h in reranked}  # 6 of 6: the same photos, region scores
        assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)
        assert [h.score for h in plain] != [h.score for h in reranked]
        shoes = plugin.search(SketchTextQuery(sketch=sketch, category="shoes", regions=True))
        assert shoes and {h.payload["category"] for h in shoes} == {"shoes"}
    with (
        SketchTextPlugin(plugin_settings(tmp_path, checkpoint, regions=False)) as plugin,
        pytest.raises(ConfigError, match="created with photo regions"),
    ):
        plugin.ingest(catalog, prune=True)


def test_without_regions_a_regions_search_says_how_to_get_them(catalog: Path, tmp_path: Path) -> None:
    with SketchTextPlugin(plugin_settings(tmp_path, None)) as plugin:
        plugin.ingest(catalog)
        assert plugin.store.region_grid(plugin.collection) is None  # zero-shot: off by default
        assert plugin.search(SketchTextQuery(text="a red shoe"))
        with pytest.raises(QueryError, match="holds no photo regions"):
            plugin.search(SketchTextQuery(text="a red shoe", regions=True))


def test_zero_shot_regions_on_request(catalog: Path, tmp_path: Path) -> None:
    with SketchTextPlugin(plugin_settings(tmp_path, None, regions=True)) as plugin:
        plugin.ingest(catalog)
        assert plugin.store.region_grid(plugin.collection) == 2
        assert len(plugin.search(SketchTextQuery(text="a red shoe", regions=True, limit=3))) == 3


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_host_runs_the_same_two_stage_request_with_its_own_client(
    checkpoint: Path, catalog: Path, tmp_path: Path
) -> None:
    client = QdrantClient(path=str(tmp_path / "host-qdrant"))
    try:
        settings = plugin_settings(tmp_path, checkpoint)
        with SketchTextPlugin(settings, client=client, collection="products") as plugin:
            plugin.ingest(catalog)
            for weight in (1.0, 0.5):
                plugin.region_search = RegionSearch(prefetch=4, weight=weight)
                query = SketchTextQuery(sketch=catalog / "shoes" / "item0.png", text="in blue", limit=3, regions=True)
                encoded = plugin.encode(query)
                response = client.query_points("products", **encoded.request())
                ours = plugin.search(query)
                assert [str(p.id) for p in response.points] == [str(h.id) for h in ours]
                assert [p.score for p in response.points] == pytest.approx([h.score for h in ours], abs=1e-6)
    finally:
        client.close()


def test_a_batch_job_carries_the_regions_choice_to_the_worker() -> None:
    job = BatchJob(1, "c", "/cat", ("a",), "m1", regions=True)
    assert BatchJob.from_json(job.to_json()) == job
    legacy = {k: v for k, v in job.to_json().items() if k != "regions"}
    assert BatchJob.from_json(legacy).regions is None


def test_the_command_line_ingests_and_searches_regions(catalog: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sketchtext.cli.main import main

    def run(*args: str):
        return CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), *args, "--model", TINY_SPEC])

    assert run("ingest", str(catalog), "--regions", "--device", "cpu").exit_code == 0
    hits = run("search", "--text", "a red bag", "--category", "bags", "--regions", "--json")
    assert hits.exit_code == 0, hits.output
    assert len(json.loads(hits.output)) == 3  # every bag, reranked
    plain = run("ingest", str(catalog), "--no-regions", "--collection", "plain", "--device", "cpu")
    assert plain.exit_code == 0, plain.output
    refused = run("search", "--text", "a red bag", "--regions", "--collection", "plain")
    assert refused.exit_code == 1 and "holds no photo regions" in refused.output


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_deleting_from_host_points_removes_their_regions_too(backend: str, tmp_path: Path, points) -> None:
    ids, vectors, regions, _ = points
    store = (
        EdgeStore(tmp_path / "edge", vector_name="sketch", host_points=True)
        if backend == "edge"
        else QdrantStore(open_local(tmp_path), vector_name="sketch", host_points=True, owns_client=True)
    )
    with store:
        store.ensure_collection("c", D, "m1", region_grid=2)
        store.upsert("c", ids[:2], vectors[:2], [{"key": "a"}, {"key": "b"}], regions=regions[:2])
        assert set(stored_vectors(store, ids[0])) == {"sketch", "sketch-regions"}
        store.delete("c", ids[:1])
        assert not stored_vectors(store, ids[0]) and set(stored_vectors(store, ids[1])) == {"sketch", "sketch-regions"}


@pytest.mark.parametrize("page", [{"offset": 5}, {"score_threshold": 0.2}])
def test_a_regions_query_refuses_offset_and_score_threshold(page: dict) -> None:
    # the rerank orders only its best candidates: a page past them, or a cut on a mixed score, would mislead
    from sketchtext.plugin.search import check_query

    check_query(SketchTextQuery(text="a red boot", regions=True))
    with pytest.raises(QueryError, match="do not apply to a regions query"):
        check_query(SketchTextQuery(text="a red boot", regions=True, **page))
