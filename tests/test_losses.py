"""Each loss on hand-built cases: zero where the constraint holds, positive where it is broken."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from sketchtext.plugin.method.losses import (
    MethodCfg,
    composition_loss,
    distance,
    neutral_text_loss,
    prompt_consistency_loss,
    reconstruction_loss,
    region_triplet_loss,
    total_loss,
    triplet_loss,
)
from sketchtext.plugin.model.composer import pool_regions

E = torch.eye(4)  # orthonormal directions: cos 1 with itself, 0 with the others


def test_triplet_is_zero_when_the_positive_is_much_closer() -> None:
    queries, photos = E[:2], E[:2]  # each query sits on its photo; the other photo is orthogonal
    assert triplet_loss(queries, photos, margin=0.2) == 0
    swapped = triplet_loss(queries, photos.flip(0), margin=0.2)  # the negative is the nearer one
    assert swapped == pytest.approx(1.2)
    near = F.normalize(E[0] + 0.95 * E[1], dim=0)  # positive only slightly nearer than the negative: inside m
    assert triplet_loss(torch.stack([near, E[1]]), E[:2], margin=0.2) > 0
    assert triplet_loss(E[:1], E[:1], margin=0.2) == 0  # no negative in a batch of one


def test_region_triplet_rewards_a_matching_region() -> None:
    # photo 0 has one cell equal to query 0 among unrelated cells; photo 1 has none
    regions = torch.stack([torch.stack([E[0], E[2], E[3], E[2]]), torch.stack([E[1], E[3], E[3], E[2]])])
    assert region_triplet_loss(E[:2], regions, margin=0.2, temperature=0.01) == pytest.approx(0, abs=1e-4)
    assert region_triplet_loss(E[:2], regions.flip(0), margin=0.2, temperature=0.01) > 1
    tokens = torch.randn(2, 4, 4, 8)
    cells = pool_regions(tokens, 2)
    assert cells.shape == (2, 4, 8)
    torch.testing.assert_close(cells.norm(dim=-1), torch.ones(2, 4))
    torch.testing.assert_close(cells[0, 0], F.normalize(tokens[0, :2, :2].mean(dim=(0, 1)), dim=0))


def test_prompt_consistency_is_zero_only_for_equal_queries() -> None:
    assert prompt_consistency_loss(E[:2], E[:2]) == 0
    assert prompt_consistency_loss(E[:2], E[2:4]) == pytest.approx(1.0)


def test_composition_wants_the_composed_query_nearer_than_the_sketch() -> None:
    photos = E[:2]
    sketch = F.normalize(E[:2] + E[2:4], dim=1)  # halfway to its photo
    assert composition_loss(photos, sketch, photos, margin=0.2) == 0  # composed query on its photo
    worse = F.normalize(E[:2] + 3 * E[2:4], dim=1)  # farther from the photo than the sketch query
    assert composition_loss(worse, sketch, photos, margin=0.2) > 0


def test_neutral_text_must_not_move_the_query() -> None:
    photos, sketch = E[:2], F.normalize(E[:2] + E[2:4], dim=1)
    assert neutral_text_loss(sketch, sketch, photos) == 0
    assert neutral_text_loss(E[2:4], sketch, photos) > 0
    assert distance(E[:1], E[:1]) == 0


def test_reconstruction_is_l1() -> None:
    image = torch.rand(2, 3, 8, 8)
    assert reconstruction_loss(image, image) == 0
    assert reconstruction_loss(image + 0.5, image) == pytest.approx(0.5)


def test_total_weights_and_ramp() -> None:
    parts = {name: torch.tensor(1.0) for name in ("trip", "rt", "tt", "comp", "reg", "rec")}
    cfg = MethodCfg(lambda_rt=1, lambda_tt=2, lambda_comp=3, lambda_reg=4, lambda_rec=5)
    assert total_loss(parts, cfg) == 16
    assert total_loss(parts, cfg, ramp=0.0) == 1  # warm-up start: the triplet alone
    assert set(MethodCfg().weights()) == {"rt", "tt", "comp", "reg", "rec", "anchor"}
    early = MethodCfg(lambda_rt=1, lambda_tt=2, lambda_comp=3, lambda_reg=4, lambda_rec=5, early=("rt",))
    assert total_loss(parts, early, ramp=0.0) == 2  # the region term from the first step, composition after


def test_the_anchor_pulls_the_sketch_query_to_a_fixed_sketch_embedding() -> None:
    from sketchtext.plugin.method.losses import anchor_loss

    sketch = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    assert anchor_loss(sketch.detach(), sketch).item() == pytest.approx(0.0, abs=1e-6)
    query = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    anchor_loss(query, sketch).backward()
    assert sketch.grad is None and query.grad is not None
