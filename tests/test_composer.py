"""The composer: the text tower fed embeddings is CLIP's own encode_text, and only the trained parts learn."""

from __future__ import annotations

import logging

import pytest
import torch

from sketchtext.plugin.errors import ModelError
from sketchtext.plugin.method.losses import MethodCfg, total_loss
from sketchtext.plugin.method.objective import method_losses, read_phrases
from sketchtext.plugin.model.composer import (
    ComposedCLIP,
    ComposerCfg,
    assemble,
    build_composer,
    embed_words,
    encode_sequences,
    freeze_for_training,
    image_layernorms,
    layernorm_state,
    load_layernorm_state,
    word_ids,
)
from sketchtext.plugin.model.spec import ModelSpec, create_clip
from tests.conftest import TINY_SPEC

PROMPTS = ["a photo of a shoe", "a red boot with a silver buckle, in tan suede", "", "x"]


@pytest.fixture
def fresh():
    """A tiny CLIP of its own (training flips requires_grad, so never the shared session encoder)."""
    model, preprocess, tokenizer = create_clip(ModelSpec.parse(TINY_SPEC))
    return model, preprocess, tokenizer


def test_embedding_path_is_bit_identical_to_encode_text(tiny_encoder) -> None:
    model, tokenizer = tiny_encoder.model, tiny_encoder.tokenizer
    with torch.no_grad():
        reference = model.encode_text(tokenizer(PROMPTS))
        rows = [[words] for words in embed_words(model, tokenizer, PROMPTS)]
        embeddings, ends = assemble(model, tokenizer, rows, trim=False)
        assert torch.equal(ends, tokenizer(PROMPTS).argmax(dim=-1))
        assert torch.equal(encode_sequences(model, embeddings, ends), reference)
        # a prompt split into prefix, "word" and tail pieces is the same sequence
        prefix, word, tail = embed_words(model, tokenizer, ["a photo of", "a", "shoe"])
        pieces, ends = assemble(model, tokenizer, [[prefix, word, tail]], trim=False)
        assert torch.equal(encode_sequences(model, pieces, ends), model.encode_text(tokenizer(PROMPTS[:1])))
        # trimmed after EOT (what training and serving use): the same up to float rounding
        trimmed, ends = assemble(model, tokenizer, rows, trim=True)
        assert trimmed.shape[1] < embeddings.shape[1]
        torch.testing.assert_close(encode_sequences(model, trimmed, ends), reference, atol=1e-5, rtol=1e-4)


def test_long_text_is_truncated_with_a_warning(tiny_encoder, caplog) -> None:
    model, tokenizer = tiny_encoder.model, tiny_encoder.tokenizer
    composer = build_composer(model, tokenizer, ComposerCfg())
    cc = ComposedCLIP(model, tokenizer, composer)
    long_text = " ".join(["suede"] * 200)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        embeddings, ends = assemble(model, tokenizer, [[composer.context, *cc.words([long_text])]], trim=False)
        vector = cc.query(torch.zeros(1, composer.context.shape[1]), cc.words([long_text]))
    assert "truncated" in caplog.text
    assert embeddings.shape[1] == 77 and int(ends[0]) == 76
    assert torch.isfinite(vector).all()


def test_context_starts_as_the_prompt_words_and_text_changes_the_query(tiny_encoder) -> None:
    model, tokenizer = tiny_encoder.model, tiny_encoder.tokenizer
    composer = build_composer(model, tokenizer, ComposerCfg(context_prompt="a photo of"))
    ids = word_ids(tokenizer, "a photo of")
    assert composer.context.shape == (3, model.token_embedding.weight.shape[1])
    assert torch.equal(composer.context.detach(), model.token_embedding.weight[ids].detach())
    cc = ComposedCLIP(model, tokenizer, composer)
    with torch.no_grad():
        words = composer.to_word(torch.nn.functional.normalize(torch.randn(2, 64), dim=-1))
        alone = cc.query(words)
        with_text = cc.query(words, cc.words(["in red leather", "in blue"]))
        with_nothing = cc.query(words, [None, None])
    assert torch.equal(alone, with_nothing)
    assert not torch.allclose(alone, with_text)
    torch.testing.assert_close(alone.norm(dim=-1), torch.ones(2))


def test_gradients_reach_only_the_trained_parts(fresh) -> None:
    model, preprocess, tokenizer = fresh
    composer = build_composer(model, tokenizer, ComposerCfg(recon_size=8))
    trained = freeze_for_training(model, composer)
    cc = ComposedCLIP(model, tokenizer, composer)
    torch.manual_seed(0)
    sketches, photos = torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)
    prompts = cc.words(read_phrases("prompts.txt")[:4])
    neutrals = cc.words(read_phrases("neutral_texts.txt")[:4])
    cfg = MethodCfg(lambda_rt=1, lambda_tt=1, lambda_comp=1, lambda_reg=1, lambda_rec=1)
    parts = method_losses(cc, sketches, photos, prompts, neutrals, cfg)
    assert set(parts) == {"trip", "rt", "tt", "comp", "reg", "rec"}
    total_loss(parts, cfg).backward()

    expected = {f"{name}.{p}" for name, m in image_layernorms(model).items() for p, _ in m.named_parameters()}
    got = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got == expected  # every LayerNorm of V, nothing else of CLIP
    assert not any(name.startswith(("transformer.", "token_embedding", "ln_final")) for name in got)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert "token_embedding.weight" in frozen and "visual.conv1.weight" in frozen and "text_projection" in frozen
    for name, param in composer.named_parameters():  # C_v2w, P^L and G all learn
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert {id(p) for p in trained} == {id(p) for p in model.parameters() if p.requires_grad} | {
        id(p) for p in composer.parameters()
    }


def test_layernorm_state_round_trip_and_mismatch(tiny_encoder, fresh) -> None:
    model = fresh[0]
    state = {k: v.detach() + 0.5 for k, v in layernorm_state(model).items()}
    load_layernorm_state(model, state)
    assert all(torch.equal(layernorm_state(model)[k], v) for k, v in state.items())
    with pytest.raises(ModelError, match="base model"):
        load_layernorm_state(model, dict(list(state.items())[:-1]))


def test_cnn_tower_tunes_norm_affines_and_gives_region_cells() -> None:
    """sketchtext-mini's image tower is a timm CNN: its BatchNorm affines are the tuned "LayerNorms", and the
    region-aware loss reads the feature map's cells, whose mean is the tower's own pooled output."""
    model, _, tokenizer = create_clip(ModelSpec.parse("open_clip:sketchtext-mini"))
    norms = image_layernorms(model)
    assert norms and all(isinstance(m, torch.nn.BatchNorm2d) for m in norms.values())
    cc = ComposedCLIP(model, tokenizer, build_composer(model, tokenizer, ComposerCfg()))
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled, cells = cc.images_with_tokens(pixels)
        torch.testing.assert_close(pooled, cc.images(pixels), atol=1e-5, rtol=1e-4)
    assert cells.shape[0] == 2 and cells.shape[-1] == pooled.shape[-1] and cells.shape[1] * cells.shape[2] > 1
    trained = freeze_for_training(model, cc.composer)
    assert {id(p) for p in layernorm_state(model).values()} <= {id(p) for p in trained}
