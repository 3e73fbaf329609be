"""What every command shares: the group's state, turning project errors into one line, and the model options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sketchtext.plugin.errors import SketchTextError
from sketchtext.plugin.model.precision import PRECISIONS
from sketchtext.plugin.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """What the group's options give every command."""

    def __init__(self, config: Path | None, data_dir: Path | None, verbose: int) -> None:
        self.config = config
        self.data_dir = data_dir
        self.verbose = verbose

    def settings(self, **groups: dict[str, Any]) -> Settings:
        overrides: dict[str, Any] = {
            name: {k: v for k, v in values.items() if v is not None} for name, values in groups.items()
        }
        if self.data_dir is not None:
            overrides["data_dir"] = self.data_dir
        return load_settings(self.config, **{k: v for k, v in overrides.items() if v})


def friendly_errors(func: F) -> F:
    """Turn project errors into one line on stderr and exit code 1 (a traceback with -v)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SketchTextError as exc:
            if click.get_current_context().find_object(State).verbose:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def model_options(func: F) -> F:
    """--model/--device/--precision/--batch-size, shared by commands that load a model."""
    func = click.option("--batch-size", type=click.IntRange(min=1), help="Images per encoder pass.")(func)
    func = click.option("--precision", type=click.Choice(PRECISIONS), help="Model precision.")(func)
    func = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs.")(func)
    func = click.option(
        "--checkpoint",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="A `sketchtext train` checkpoint: tuned image tower and composed queries (its base model by default).",
    )(func)
    func = click.option("--model", "model_spec", help="Model spec, e.g. open_clip:ViT-B-32@laion2b_s34b_b79k.")(func)
    func = click.option("--collection", help="Qdrant collection.")(func)
    return func


def settings_from(
    state: State,
    model_spec: str | None,
    device: str | None,
    precision: str | None,
    batch_size: int | None,
    collection: str | None,
    checkpoint: Path | None = None,
    regions: bool | None = None,
) -> Settings:
    if checkpoint is not None and model_spec is None:  # a checkpoint implies the base model it was trained on
        from sketchtext.plugin.model.checkpoint import read_checkpoint

        model_spec = read_checkpoint(checkpoint).base_spec
    return state.settings(
        model={
            "spec": model_spec,
            "device": device,
            "precision": precision,
            "batch_size": batch_size,
            "checkpoint": checkpoint,
        },
        store={"collection": collection, "regions": regions},
    )
