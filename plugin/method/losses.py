"""The method's losses (DESIGN.md section 4). Every embedding passed in is L2-normalised; δ(a, b) = 1 − cos(a, b).

Triplets use in-batch negatives: for row i the positive is photo i and every other photo of the batch is a
negative, so a batch of B pairs gives B·(B−1) triplets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class MethodCfg:
    """Margin and loss weights: L = L_trip + λ_RT·L_RT + λ_TT·L_TT + λ_comp·L_comp + λ_reg·L_reg + λ_rec·L_rec.

    Defaults from runs on generated pairs with the random-weight tiny CLIP (README, "The method"): L_RT shortened
    the initial plateau of L_trip the most, so it has full weight; L_rec (at 0.1) and L_reg (at 0.5) each held L_trip
    on the plateau when added alone, so they are lower. Not tuned on real data.
    """

    margin: float = 0.2
    lambda_rt: float = 1.0
    lambda_tt: float = 0.2
    lambda_comp: float = 0.5
    lambda_reg: float = 0.2
    lambda_rec: float = 0.05
    lambda_anchor: float = 0.0  # δ(s_L, V(S)): keeps the sketch query near the tuned sketch embedding (its shape)
    early: tuple[str, ...] = ()  # auxiliary terms at full weight from the first step; the others ramp up (warm-up)
    region_grid: int = 2  # photo regions for L_RT: patch tokens pooled to grid × grid cells
    region_temperature: float = 0.1  # softness of the query's attention over regions

    def weights(self) -> dict[str, float]:
        return {k.removeprefix("lambda_"): v for k, v in asdict(self).items() if k.startswith("lambda_")}


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """δ between matching rows: 1 − cos (both inputs already normalised), shape (B,)."""
    return 1.0 - (a * b).sum(dim=-1)


def distance_matrix(queries: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
    """δ(query i, photo j) for every pair, (B, B)."""
    return 1.0 - queries @ photos.T


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)
    return matrix[~eye].view(matrix.shape[0], -1)


def triplet_on_distances(distances: torch.Tensor, margin: float) -> torch.Tensor:
    """mean max(0, m + δ(q_i, p_i) − δ(q_i, p_j)) over i ≠ j, from a (B, B) distance matrix."""
    if distances.shape[0] < 2:
        return distances.new_zeros(())
    positive = distances.diagonal().unsqueeze(1)
    return F.relu(margin + positive - off_diagonal(distances)).mean()


def triplet_loss(queries: torch.Tensor, photos: torch.Tensor, margin: float) -> torch.Tensor:
    """L_trip: the sketch query s_L must be nearer its own photo p⁺ than any other photo of the batch by m."""
    return triplet_on_distances(distance_matrix(queries, photos), margin)


def region_distance_matrix(queries: torch.Tensor, regions: torch.Tensor, temperature: float) -> torch.Tensor:
    """δ between each query and each photo's regions, each photo's regions weighted by how well they match the
    query (softmax over its cells), (B, B)."""
    similarity = torch.einsum("qd,prd->qpr", queries, regions)
    weights = torch.softmax(similarity / temperature, dim=-1)
    return 1.0 - (weights * similarity).sum(dim=-1)


def region_triplet_loss(
    queries: torch.Tensor, regions: torch.Tensor, margin: float, temperature: float
) -> torch.Tensor:
    """L_RT, region-aware triplet: the triplet on region-level photo embeddings, so local detail counts."""
    return triplet_on_distances(region_distance_matrix(queries, regions, temperature), margin)


def prompt_consistency_loss(learned: torch.Tensor, handcrafted: torch.Tensor) -> torch.Tensor:
    """L_TT: δ(s_L, s_F) keeps the learned prompt near real English prompts, so unseen user text composes."""
    return distance(learned, handcrafted).mean()


def composition_loss(composed: torch.Tensor, sketch: torch.Tensor, photos: torch.Tensor, margin: float) -> torch.Tensor:
    """L_comp: the composed query s_Δ (sketch + the photo's extra detail Δ) must be nearer p⁺ than s_L is, and
    nearer p⁺ than any other photo by the margin (triplet form). s_L is the reference, not a thing to push away."""
    closer_than_sketch = F.relu(distance(composed, photos) - distance(sketch.detach(), photos)).mean()
    return closer_than_sketch + triplet_loss(composed, photos, margin)


def neutral_text_loss(neutral: torch.Tensor, sketch: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
    """L_reg: neutral words add no information, so s_N stays as far from p⁺ as s_L is."""
    return (distance(neutral, photos) - distance(sketch.detach(), photos)).abs().mean()


def anchor_loss(query: torch.Tensor, sketch: torch.Tensor) -> torch.Tensor:
    """L_anchor: δ(s_L, s) with s = V(S) held fixed, so the shape V sees survives the text tower."""
    return distance(query, sketch.detach()).mean()


def reconstruction_loss(reconstructed: torch.Tensor, thumbnails: torch.Tensor) -> torch.Tensor:
    """L_rec: L1 between G's low-resolution reconstruction and the photo's thumbnail."""
    return F.l1_loss(reconstructed, thumbnails)


def total_loss(parts: dict[str, torch.Tensor], cfg: MethodCfg, ramp: float = 1.0) -> torch.Tensor:
    """L = L_trip + Σ λ_k · L_k over the auxiliary parts present, each λ_k scaled by `ramp` (warm-up, 0..1) unless
    the term is one of `cfg.early`."""
    weights = cfg.weights()
    loss = parts["trip"]
    for name, value in parts.items():
        if name != "trip":
            loss = loss + (1.0 if name in cfg.early else ramp) * weights[name] * value
    return loss
