"""The composer: C_v2w (image embedding → pseudo-word), the learned context P^L, the photo decoder G, the tuned
LayerNorms of the image tower, and the text-tower path fed embedding sequences instead of token ids.

This module imports torch at the top; the library reaches it only when a model is in use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from sketchtext.plugin.errors import ConfigError, ModelError
from sketchtext.plugin.model.query import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

TEXT_TOWER_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")


@dataclass(frozen=True)
class ComposerCfg:
    """Shape of the trained parts outside the image tower."""

    context_prompt: str = "a photo of"  # P^L starts as the word embeddings of this prompt (one vector per token)
    hidden_dim: int = 0  # C_v2w's hidden width; 0 means the image embedding width D
    decoder_hidden: int = 256  # G's hidden width
    recon_size: int = 16  # G reconstructs a recon_size × recon_size RGB thumbnail of the photo


class Composer(nn.Module):
    """The trained parts outside V: C_v2w (D → d), the context tokens P^L (n × d) and the decoder G (D → photo)."""

    c_v2w: nn.Sequential
    context: nn.Parameter
    decoder: nn.Sequential

    def __init__(self, image_dim: int, token_dim: int, n_context: int, cfg: ComposerCfg) -> None:
        super().__init__()
        hidden = cfg.hidden_dim or image_dim
        self.recon_size = cfg.recon_size
        self.c_v2w = nn.Sequential(nn.Linear(image_dim, hidden), nn.GELU(), nn.Linear(hidden, token_dim))
        self.context = nn.Parameter(torch.zeros(n_context, token_dim))
        self.decoder = nn.Sequential(
            nn.Linear(image_dim, cfg.decoder_hidden), nn.GELU(), nn.Linear(cfg.decoder_hidden, 3 * cfg.recon_size**2)
        )

    def to_word(self, features: torch.Tensor) -> torch.Tensor:
        """C_v2w: image-space vectors (B, D) → pseudo-word embeddings (B, d)."""
        return self.c_v2w(features)

    def reconstruct(self, query: torch.Tensor) -> torch.Tensor:
        """G: a query embedding (B, D) → a low-resolution photo (B, 3, r, r) in the preprocessed pixel space."""
        return self.decoder(query).view(-1, 3, self.recon_size, self.recon_size)


def check_text_tower(model: Any) -> None:
    if not all(hasattr(model, part) for part in TEXT_TOWER_PARTS):
        raise ModelError(
            f"Composed queries need an open_clip CLIP model whose text tower is built from token embeddings; "
            f"{type(model).__name__} has none. Use an architecture such as ViT-B-32."
        )


def special_ids(tokenizer: Any) -> tuple[int, int]:
    """The start- and end-of-text token ids of a CLIP BPE tokenizer."""
    sot, eot = getattr(tokenizer, "sot_token_id", None), getattr(tokenizer, "eot_token_id", None)
    if sot is None or eot is None or not hasattr(tokenizer, "encode"):
        raise ModelError(
            f"Composed queries need open_clip's CLIP BPE tokenizer; {type(tokenizer).__name__} is not supported."
        )
    return int(sot), int(eot)


def word_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a text without SOT/EOT."""
    if len(text) > MAX_TEXT_CHARS:
        log.warning("text of %d characters cut to %d before tokenising", len(text), MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
    return [int(i) for i in tokenizer.encode(text)]


def embed_words(model: Any, tokenizer: Any, texts: Sequence[str]) -> list[torch.Tensor]:
    """T_w(text) for each text: its word embeddings (k, d), without SOT/EOT; frozen."""
    table = model.token_embedding.weight
    out = []
    for text in texts:
        ids = torch.tensor(word_ids(tokenizer, text), dtype=torch.long, device=table.device)
        out.append(table[ids].detach())
    return out


def context_length(model: Any) -> int:
    return int(model.positional_embedding.shape[0])


def assemble(
    model: Any, tokenizer: Any, rows: Sequence[Sequence[torch.Tensor]], *, trim: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[SOT] piece… [EOT] pad…` for each row of embedding pieces (each (k, d)), as (B, L, d) and the EOT indices.

    Rows longer than the context lose their last tokens (the user's words come last), with a warning. With `trim`
    the sequences stop at the longest row's EOT: under the causal mask, positions after EOT never reach it.
    """
    sot, eot = special_ids(tokenizer)
    table = model.token_embedding.weight
    n_ctx = context_length(model)
    embedded: list[torch.Tensor] = []
    ends: list[int] = []
    for row in rows:
        body = torch.cat([piece.to(table.dtype) for piece in row], dim=0) if row else table[:0]
        if body.shape[0] > n_ctx - 2:
            log.warning(
                "query of %d tokens is longer than the model's context of %d; its text was truncated",
                body.shape[0] + 2,
                n_ctx,
            )
            body = body[: n_ctx - 2]
        embedded.append(torch.cat([table[sot : sot + 1], body, table[eot : eot + 1]], dim=0))
        ends.append(body.shape[0] + 1)
    length = max(ends) + 1 if trim and pool_at_eot(model) else n_ctx
    pad = table[0]  # what the tokenizer pads with
    batch = torch.stack([torch.cat([seq, pad.expand(length - seq.shape[0], -1)], dim=0) for seq in embedded])
    return batch, torch.tensor(ends, dtype=torch.long, device=table.device)


def pool_at_eot(model: Any) -> bool:
    return getattr(model, "text_pool_type", "argmax") in ("argmax", "eos")


def encode_sequences(model: Any, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
    """The text tower over embedding sequences (B, L, d), step for step as open_clip's `CLIP.encode_text`:
    positional embedding, causal mask, transformer, final LayerNorm, pooling at EOT, text projection."""
    from open_clip.transformer import text_global_pool

    cast_dtype = model.transformer.get_cast_dtype()
    length = embeddings.shape[1]
    x = embeddings.to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    if pool_at_eot(model):
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
    else:
        x = text_global_pool(x, None, model.text_pool_type)
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, nn.Linear) else x @ model.text_projection
    return x


# A CNN tower (timm, e.g. sketchtext-mini) has no LayerNorms; its normalisation layers' affine parameters are the
# analogue the method tunes. Running statistics stay frozen: the model is in eval mode throughout.
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def image_layernorms(model: Any) -> dict[str, nn.Module]:
    """Every normalisation layer of the image tower V (LayerNorm; BatchNorm/GroupNorm in a CNN), by `visual.` name."""
    return {
        f"visual.{name}": m
        for name, m in model.visual.named_modules()
        if isinstance(m, NORM_LAYERS) and any(True for _ in m.parameters(recurse=False))
    }


def layernorm_state(model: Any) -> dict[str, torch.Tensor]:
    """The tuned parameters of V: `visual.<module>.weight|bias` → tensor."""
    return {
        f"{name}.{pname}": param
        for name, module in image_layernorms(model).items()
        for pname, param in module.named_parameters(recurse=False)
    }


def load_layernorm_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Put tuned LayerNorm parameters into V; the names must match the architecture exactly."""
    own = layernorm_state(model)
    if set(own) != set(state):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ModelError(
            f"The checkpoint's image-tower LayerNorms do not fit this model (missing {missing[:3]}, "
            f"unexpected {extra[:3]}); load it with the base model it was trained on."
        )
    with torch.no_grad():
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise ModelError(
                    f"LayerNorm {name} has shape {tuple(value.shape)} in the checkpoint, "
                    f"{tuple(own[name].shape)} in the model; use the checkpoint's base model."
                )
            own[name].copy_(value.to(own[name].dtype))


def freeze_for_training(model: Any, composer: Composer) -> list[nn.Parameter]:
    """Freeze every CLIP weight except V's LayerNorms; return the trained parameters (LNs, C_v2w, P^L, G)."""
    model.requires_grad_(False)
    for module in image_layernorms(model).values():
        module.requires_grad_(True)
    composer.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad] + list(composer.parameters())


def timm_regions(visual: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A timm CNN tower with average pooling and a linear head: (pooled, feature-map cells projected, (B, h, w, D)).

    Projection is linear, so projecting each cell and averaging equals the tower's own pooled output."""
    trunk, head = getattr(visual, "trunk", None), getattr(visual, "head", None)
    proj = getattr(head, "proj", None)
    if trunk is None or head is None or not isinstance(proj, nn.Linear) or getattr(trunk, "global_pool", None) is None:
        return None
    if not hasattr(trunk, "forward_features") or getattr(getattr(visual, "head", None), "pool", None) is not None:
        return None
    feature_map = trunk.forward_features(pixels)
    if feature_map.ndim != 4:
        return None
    cells = head(feature_map.permute(0, 2, 3, 1))
    return cells.mean(dim=(1, 2)), cells


def images_with_tokens(model: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """V(pixels) L2-normalised (B, D) and its patch tokens (CNN: feature-map cells) projected, (B, h, w, D)."""
    pooled, tokens = image_tokens(model, pixels)
    return F.normalize(pooled, dim=-1), tokens


def image_tokens(model: Any, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """V(pixels) not normalised (B, D) and its patch tokens (CNN: feature-map cells) projected, (B, h, w, D), both
    float32: one pass of the tower, as the int8 graph exports it."""
    cnn = timm_regions(model.visual, pixels)
    if cnn is not None:
        return cnn[0].float(), cnn[1].float()
    with visual_tokens(model) as visual:
        pooled, tokens = visual(pixels)
    tokens = tokens @ visual.proj if visual.proj is not None else tokens
    h, w = visual.grid_size
    return pooled.float(), tokens.float().reshape(tokens.shape[0], h, w, -1)


def pool_regions(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """Projected patch tokens (B, h, w, D) averaged over a grid × grid layout of cells, normalised: (B, R, D); the
    regions L_RT trains on and the store's region vectors."""
    cells = F.adaptive_avg_pool2d(tokens.permute(0, 3, 1, 2), grid)
    return F.normalize(cells.flatten(2).transpose(1, 2), dim=-1)


@contextmanager
def visual_tokens(model: Any) -> Any:
    """Make a ViT image tower return (pooled, patch tokens) for the duration of the block."""
    visual = model.visual
    if not hasattr(visual, "output_tokens") or not hasattr(visual, "grid_size"):
        raise ConfigError(
            f"The region-aware loss needs a ViT image tower with patch tokens or a timm CNN with a linear head; "
            f"{type(visual).__name__} has neither. Set its weight to 0 (--lambda rt=0)."
        )
    previous = visual.output_tokens
    visual.output_tokens = True
    try:
        yield visual
    finally:
        visual.output_tokens = previous


def build_composer(model: Any, tokenizer: Any, cfg: ComposerCfg) -> Composer:
    """A fresh composer for a CLIP model; P^L starts as the word embeddings of `cfg.context_prompt`."""
    check_text_tower(model)
    ids = word_ids(tokenizer, cfg.context_prompt)
    if not ids:
        raise ConfigError("The context prompt has no words; use e.g. 'a photo of'.")
    table = model.token_embedding.weight
    composer = Composer(image_dim(model), int(table.shape[1]), len(ids), cfg)
    with torch.no_grad():
        composer.context.copy_(table[torch.tensor(ids, device=table.device)].float())
        # pseudo-words should start at the scale of real word embeddings, not of a default Linear init
        out = cast(nn.Linear, composer.c_v2w[-1])
        out.bias.zero_()
        probe = F.normalize(torch.randn(256, image_dim(model), generator=torch.Generator().manual_seed(0)))
        produced = composer.c_v2w(probe).norm(dim=1).mean().clamp_min(1e-6)
        out.weight.mul_(table.detach().float().norm(dim=1).mean().cpu() / produced)
    return composer.to(table.device)


def image_dim(model: Any) -> int:
    projection = model.text_projection
    return int(projection.out_features if isinstance(projection, nn.Linear) else projection.shape[-1])


class ComposedCLIP:
    """A CLIP model and its composer: the method's forward passes, shared by training, evaluation and serving."""

    def __init__(self, model: Any, tokenizer: Any, composer: Composer, *, trim: bool = True) -> None:
        check_text_tower(model)
        self.model = model
        self.tokenizer = tokenizer
        self.composer = composer
        self.trim = trim

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """V(pixels), L2-normalised (B, D)."""
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    def images_with_tokens(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """V(pixels) L2-normalised (B, D) and its patch tokens (CNN: feature-map cells) projected, (B, h, w, D)."""
        return images_with_tokens(self.model, pixels)

    def words(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return embed_words(self.model, self.tokenizer, texts)

    def encode(self, rows: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """T_t over rows of embedding pieces, L2-normalised (B, D)."""
        embeddings, ends = assemble(self.model, self.tokenizer, rows, trim=self.trim)
        return F.normalize(encode_sequences(self.model, embeddings, ends).float(), dim=-1)

    def query(
        self,
        pseudo_words: torch.Tensor,
        tails: Sequence[torch.Tensor | None] | None = None,
        prefixes: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """T_t([prefix; s^w; tail]) per row; the prefix defaults to P^L, the tail to nothing."""
        context = self.composer.context
        rows = []
        for i in range(pseudo_words.shape[0]):
            row = [prefixes[i] if prefixes is not None else context, pseudo_words[i : i + 1]]
            tail = tails[i] if tails is not None else None
            if tail is not None:
                row.append(tail)
            rows.append(row)
        return self.encode(rows)
