"""`sketchtext export-onnx`: the query side of a model as ONNX, for a host's API server without torch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sketchtext.cli.common import friendly_errors


@click.command("export-onnx")
@click.option("--model", "model_spec", required=True, help="Model spec, e.g. open_clip:ViT-B-32@laion2b_s34b_b79k.")
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A trained sketchtext checkpoint folder (tuned norms, C_v2w, P^L: composed queries).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="The export folder.")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@friendly_errors
def export_onnx(model_spec: str, checkpoint: Path | None, out: Path, opset: int, as_json: bool) -> None:
    """Export what a query needs (image tower, C_v2w, text tower fed embeddings, tokenizer, manifest) to OUT; query
    with it through --model onnx:OUT (onnxruntime, no torch)."""
    from sketchtext.plugin.model.onnx_export import export_onnx as run

    manifest = run(model_spec, out, checkpoint=checkpoint, opset=opset)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    click.echo(f"exported {manifest['fingerprint']} to {out}; query with --model onnx:{out}")
