"""FG-SBIR evaluation: for each query the rank of its own photo in the split's gallery; Acc@K is the share of
queries whose photo ranks ≤ K. Reported per mode, zero-shot (base model) and trained (checkpoint)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from sketchtext.plugin.images import open_image
from sketchtext.plugin.method.pairs import TextQuery, load_pairs, load_queries, photos, queries_for
from sketchtext.plugin.model.clip import ClipEncoder
from sketchtext.plugin.store.regions import RegionSearch, maxsim_rerank

log = logging.getLogger(__name__)

KS = (1, 5, 10)
# mode → (what it is, needs text, uses the checkpoint)
MODES: dict[str, tuple[str, bool, bool]] = {
    "zero_shot_sketch": ("zero-shot sketch: V(S), base gallery", False, False),
    "zero_shot_text": ("text only: CLIP text, base gallery", True, False),
    "zero_shot_sum": ("zero-shot sum: V(S) + text, base gallery", True, False),
    "sketch": ("trained sketch: s_L, tuned gallery", False, True),
    "text": ("text only: CLIP text, tuned gallery", True, True),
    "sum": ("sum: tuned V(S) + text, tuned gallery", True, True),
    "composed": ("composed: T_t([P^L; s^w; text]), tuned gallery", True, True),
    "fusion": ("late fusion of composed and sum, tuned gallery", True, True),
}
Inputs = list[tuple[Image.Image | None, str | None]]


def ranks(queries: NDArray[np.float32], gallery: NDArray[np.float32], targets: Sequence[int]) -> NDArray[np.int64]:
    """1-based rank of each query's target photo among the gallery (ties count in the target's favour)."""
    scores = queries @ gallery.T
    own = scores[np.arange(len(targets)), np.asarray(targets)]
    return 1 + (scores > own[:, None]).sum(axis=1)


def rerank_ranks(
    queries: NDArray[np.float32],
    gallery: NDArray[np.float32],
    regions: NDArray[np.float32],
    targets: Sequence[int],
    search: RegionSearch,
) -> NDArray[np.int64]:
    """1-based rank of each target after the store's two stages (`maxsim_rerank`): its place among the reranked
    candidates, or its global rank when the prefetch missed it (the rerank only reorders the top candidates)."""
    plain = ranks(queries, gallery, targets)
    out = plain.copy()
    for row, (query, target) in enumerate(zip(queries, targets, strict=True)):
        order, _ = maxsim_rerank(query, gallery, regions, limit=search.prefetch, search=search)
        found = np.flatnonzero(order == target)
        if found.size:
            out[row] = int(found[0]) + 1
    return out


def accuracy(rank: NDArray[np.int64], ks: Sequence[int] = KS) -> dict[str, float]:
    return {f"acc@{k}": float(np.mean(rank <= k)) if len(rank) else float("nan") for k in ks}


@dataclass(frozen=True)
class ModeResult:
    """One mode's numbers."""

    mode: str
    description: str
    n: int
    accuracy: dict[str, float]
    mean_rank: float


@dataclass(frozen=True)
class EvalReport:
    """Every mode's results on one split, with what was evaluated."""

    checkpoint: str
    data: str
    split: str
    gallery: int
    sketches: int
    text_queries: int
    results: list[ModeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result(self, mode: str) -> ModeResult:
        return next(r for r in self.results if r.mode == mode)


def format_table(report: EvalReport) -> str:
    """A plain-text table of the report, one row per mode."""
    ks = KS
    head = f"{'mode':<26} {'n':>5} " + " ".join(f"{'Acc@' + str(k):>7}" for k in ks) + f" {'mean rank':>9}  what"
    lines = [
        f"split {report.split}: {report.sketches} sketches, {report.text_queries} text queries, "
        f"gallery of {report.gallery} photos",
        head,
        "-" * len(head),
    ]
    for r in report.results:
        accs = " ".join(f"{r.accuracy[f'acc@{k}']:7.3f}" for k in ks)
        lines.append(f"{r.mode:<26} {r.n:>5} {accs} {r.mean_rank:9.2f}  {r.description}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def read_image(path: Path) -> Image.Image:
    return open_image(path.read_bytes(), name=str(path))


def in_batches(
    encode: Callable[[Inputs, list[str | None]], NDArray[np.float32]],
    inputs: Inputs,
    combines: list[str | None],
    batch: int,
) -> NDArray[np.float32]:
    parts = [encode(inputs[i : i + batch], combines[i : i + batch]) for i in range(0, len(inputs), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def query_encoder(encoder: ClipEncoder) -> Callable[[Inputs, list[str | None]], NDArray[np.float32]]:
    return lambda inputs, combines: encoder.query_vectors(inputs, combines)[0]  # type: ignore[arg-type]


def gallery_vectors(encoder: ClipEncoder, gallery: Sequence[Path], batch: int) -> NDArray[np.float32]:
    chunks = [
        encoder.encode_images([read_image(p) for p in gallery[i : i + batch]]) for i in range(0, len(gallery), batch)
    ]
    return np.concatenate(chunks)


def gallery_regions(
    encoder: ClipEncoder, gallery: Sequence[Path], batch: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Global vectors (N, D) and region vectors (N, R, D) of the gallery, as ingest with regions writes them."""
    parts = [
        encoder.encode_image_regions(encoder.preprocess_images([read_image(p) for p in gallery[i : i + batch]]))
        for i in range(0, len(gallery), batch)
    ]
    return np.concatenate([g for g, _ in parts]), np.concatenate([r for _, r in parts])


def measure(
    encoder: ClipEncoder,
    modes: Sequence[str],
    sketch_set: Sequence[tuple[Path, Path]],
    text_set: Sequence[TextQuery],
    gallery: Sequence[Path],
    *,
    batch: int = 32,
    regions: RegionSearch | None = None,
) -> list[ModeResult]:
    """Rank every query of each mode against the encoder's gallery vectors. `sketch_set` holds (sketch, photo)
    pairs for the sketch-only modes; `text_set` the text queries for the others. With `regions`, each mode gets a
    twin row `<mode>+regions`: the same queries reranked by the gallery's regions as the store does it."""
    cells = None
    if regions is None:
        vectors = gallery_vectors(encoder, gallery, batch)
    else:
        vectors, cells = gallery_regions(encoder, gallery, batch)
    index = {p.resolve(): i for i, p in enumerate(gallery)}
    encode = query_encoder(encoder)
    images: dict[Path, Image.Image] = {}

    def sketch(path: Path) -> Image.Image:
        if path not in images:
            images[path] = read_image(path)
        return images[path]

    results = []
    for mode in modes:
        description, needs_text, _ = MODES[mode]
        base = mode.removeprefix("zero_shot_")
        if not needs_text:
            inputs: Inputs = [(sketch(s), None) for s, _ in sketch_set]
            targets = [index[p.resolve()] for _, p in sketch_set]
        else:
            inputs = [(None if base == "text" else sketch(q.sketch), q.text) for q in text_set]
            targets = [index[q.target.resolve()] for q in text_set]
        if not inputs:
            continue
        combine = base if base in ("sum", "composed", "fusion") else None
        queries = in_batches(encode, inputs, [combine] * len(inputs), batch)
        rank = ranks(queries, vectors, targets)
        results.append(ModeResult(mode, description, len(rank), accuracy(rank), float(rank.mean())))
        if regions is not None and cells is not None:
            rank = rerank_ranks(queries, vectors, cells, targets, regions)
            what = f"{description}; top {regions.prefetch} reranked by regions (weight {regions.weight:g})"
            results.append(ModeResult(f"{mode}+regions", what, len(rank), accuracy(rank), float(rank.mean())))
    return results


def evaluate(
    checkpoint: Path,
    data: Path,
    *,
    queries_file: Path | None = None,
    base_spec: str | None = None,
    split: str = "test",
    device: str = "auto",
    precision: str = "fp32",
    batch: int = 32,
    regions: RegionSearch | None = None,
) -> EvalReport:
    """Evaluate a checkpoint against its base model on one split of a data folder, every mode that the data
    allows (text modes need a queries file: `--queries`, or `queries.csv` in the data folder); with `regions`,
    every mode also reranked by the gallery's regions (rows `<mode>+regions`)."""
    from sketchtext.plugin.model.checkpoint import read_checkpoint
    from sketchtext.plugin.model.composed import ComposedEncoder
    from sketchtext.plugin.model.factory import load_encoder

    info = read_checkpoint(checkpoint)
    pairs = load_pairs(data).split(split)
    gallery = photos(pairs)
    sketch_set = [(p.sketch, p.photo) for p in pairs]
    queries_file = queries_file or (data / "queries.csv" if (data / "queries.csv").is_file() else None)
    text_set = queries_for(load_queries(queries_file), gallery, {split}) if queries_file else []
    notes = []
    if not text_set:
        notes.append("no text queries for this split: text, sum, composed and fusion modes were skipped")
    base = load_encoder(base_spec or info.base_spec, device=device, precision=precision)
    zero_shot = [m for m, (_, needs_text, trained) in MODES.items() if not trained and (text_set or not needs_text)]
    results = measure(base, zero_shot, sketch_set, text_set, gallery, batch=batch, regions=regions)
    trained = ComposedEncoder.wrap(base, info)
    tuned = [m for m, (_, needs_text, used) in MODES.items() if used and (text_set or not needs_text)]
    results += measure(trained, tuned, sketch_set, text_set, gallery, batch=batch, regions=regions)
    log.info("evaluated %s on %s/%s: %d modes", checkpoint, data, split, len(results))
    return EvalReport(
        checkpoint=str(checkpoint),
        data=str(data),
        split=split,
        gallery=len(gallery),
        sketches=len(sketch_set),
        text_queries=len(text_set),
        results=results,
        notes=notes,
    )
