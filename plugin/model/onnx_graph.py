"""Torch modules as ONNX graphs: the image and text towers as `export-onnx` and the int8 image tower write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sketchtext.plugin.errors import ModelError
from sketchtext.plugin.model.composer import encode_sequences, image_tokens

DEFAULT_OPSET = 18


class ImageTower(nn.Module):
    """V as a graph: preprocessed pixels (B, 3, H, W) to image features (B, D), not normalised."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class ImageTokenTower(nn.Module):
    """V and its projected patch tokens as one graph: pixels (B, 3, H, W) to (features (B, D), tokens (B, h, w, D)),
    neither normalised; the caller pools the tokens into regions (`composer.pool_regions`)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image_tokens(self.model, pixels)


class TextTower(nn.Module):
    """T_t as a graph: token embeddings (B, L, d) and the EOT positions (B,) to text features (B, D)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        return encode_sequences(self.model, embeddings, eot_index)


def export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    opset: int = DEFAULT_OPSET,
    outputs: tuple[str, ...] = ("output",),
) -> None:
    """One graph through torch's exporter (torch.export, then onnxscript): every input's first axis is the batch;
    `embeddings` has a dynamic length too."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes: dict[str, dict[int, Any]] = {name: {0: batch} for name in names}
    if "embeddings" in shapes:
        shapes["embeddings"][1] = torch.export.Dim("length", min=2, max=4096)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused attention kernel has no ONNX form
    try:
        program = torch.onnx.export(
            module.eval(),
            args,
            input_names=names,
            output_names=list(outputs),
            dynamic_shapes=tuple(shapes[name] for name in names),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,  # else torch prints its progress to stdout
        )
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    if program is None:
        raise ModelError(f"torch.onnx.export gave no program for {path.name}; check the torch and onnxscript versions.")
    program.save(str(path), external_data=False)
