"""The sketch's own regions (through the tuned tower) as a second query beside the one-vector regions rerank, on the
**val** split: Acc@1 per mode and weight pair, one JSON line per mode (README, "Region-aware search", variants).

    .venv/bin/python tests/benchmarks/bench_sketch_regions.py WORLD

WORLD: the full seed-0 world, `sketchtext generate WORLD --shapes-per-category 300`.

Each of the top 50 by the mode's global score is rescored by (1 − w_q − w_s)·global + w_q·max_i(q·r_i) +
w_s·mean_j max_i(s_j·r_i), with r_i the photo's regions and s_j the sketch's, with the bundled demo checkpoint.
"""

import json
import sys
from pathlib import Path

import numpy as np

from sketchtext.plugin.method import evaluation as ev
from sketchtext.plugin.method.pairs import load_pairs, load_queries, photos, queries_for
from sketchtext.plugin.model.checkpoint import read_checkpoint
from sketchtext.plugin.model.composed import ComposedEncoder
from sketchtext.plugin.model.factory import load_encoder

ckpt = Path("plugin/data/demo/method")
data = Path(sys.argv[1])
base_spec = "open_clip:sketchtext-mini@plugin/data/demo/mini-clip.safetensors"
info = read_checkpoint(ckpt)
pairs = load_pairs(data).split("val")
gallery = photos(pairs)
text_set = queries_for(load_queries(data / "queries.csv"), gallery, {"val"})
enc = ComposedEncoder.wrap(load_encoder(base_spec, device="cpu", precision="fp32"), info)
G, R = ev.gallery_regions(enc, gallery, 32)
index = {p.resolve(): i for i, p in enumerate(gallery)}
encode = ev.query_encoder(enc)
sk_cache = {}


def sketch_regions(paths):
    todo = [p for p in paths if p not in sk_cache]
    for i in range(0, len(todo), 32):
        chunk = todo[i : i + 32]
        _, cells = enc.encode_image_regions(enc.preprocess_images([ev.read_image(p) for p in chunk]))
        for p, c in zip(chunk, cells, strict=True):
            sk_cache[p] = c
    return np.stack([sk_cache[p] for p in paths])


out = {}
for mode in ("sketch", "sum", "composed", "fusion"):
    if mode == "sketch":
        sketches = [s for s, _ in [(p.sketch, p.photo) for p in pairs]]
        inputs = [(ev.read_image(s), None) for s in sketches]
        targets = [index[p.photo.resolve()] for p in pairs]
        combine = None
    else:
        sketches = [q.sketch for q in text_set]
        inputs = [(ev.read_image(q.sketch), q.text) for q in text_set]
        targets = [index[q.target.resolve()] for q in text_set]
        combine = mode
    Q = ev.in_batches(encode, inputs, [combine] * len(inputs), 32)
    S = sketch_regions(sketches)  # (n, R, D)
    glob = Q @ G.T  # (n, N)
    cand = np.argsort(-glob, axis=1)[:, :50]
    res = {}
    for w1, w2 in [(0, 0), (0.1, 0), (0, 0.05), (0, 0.1), (0, 0.2), (0, 0.3), (0.1, 0.05), (0.1, 0.1)]:
        hit1 = 0
        for n in range(len(Q)):
            c = cand[n]
            r1 = (R[c] @ Q[n]).max(axis=1)
            r2 = np.einsum("jd,cid->cji", S[n], R[c]).max(axis=2).mean(axis=1)
            final = (1 - w1 - w2) * glob[n, c] + w1 * r1 + w2 * r2
            hit1 += c[np.argmax(final)] == targets[n]
        res[f"w_query={w1},w_sketch_regions={w2}"] = round(100 * hit1 / len(Q), 2)
    out[mode] = res
    print(mode, json.dumps(res), flush=True)
