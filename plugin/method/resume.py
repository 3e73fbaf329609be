"""Resumable training state in `<out>/train-state/`: the last epoch's trained tensors (safetensors) and the
optimiser state, epoch, history and best score (`state.pt`, read back with `torch.load(weights_only=True)`)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sketchtext.plugin.errors import ConfigError
from sketchtext.plugin.model.checkpoint import CONFIG, load_trained_state
from sketchtext.plugin.model.composer import Composer

STATE_DIR = "train-state"
# Settings a rerun may change without invalidating the state: how long to run and how to feed the data.
FREE_TO_CHANGE = ("epochs", "max_steps", "workers", "preload_images")


@dataclass(frozen=True)
class SavedState:
    epoch: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None


def run_identity(base_fingerprint: str, data_fingerprint: str, cfg: Any, method: Any, composer: Any) -> dict[str, Any]:
    """What must match for a rerun to continue a run: base weights, data, and every setting that shapes training."""
    train = {k: v for k, v in asdict(cfg).items() if k not in FREE_TO_CHANGE}
    return {"base": base_fingerprint, "data": data_fingerprint, "train": train, "method": asdict(method),
            "composer": asdict(composer)}  # fmt: skip


def save_state(
    out: Path,
    identity: dict[str, Any],
    epoch: int,
    tensors: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
) -> None:
    from safetensors.torch import save

    folder = out / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(
        {
            "identity": json.dumps(identity, sort_keys=True),
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "history": json.dumps(history),
            "best": json.dumps(best),
        },
        buffer,
    )
    for name, data in (("last.safetensors", save(tensors)), ("state.pt", buffer.getvalue())):
        partial = folder / f"{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, folder / name)


def load_state(
    out: Path, identity: dict[str, Any], model: Any, composer: Composer, optimizer: torch.optim.Optimizer
) -> SavedState | None:
    """Restore a previous run in `out` (None when there is none); a run with other settings is an error."""
    from safetensors.torch import load_file

    state_file = out / STATE_DIR / "state.pt"
    if not state_file.is_file():
        if (out / CONFIG).is_file():
            raise ConfigError(f"{out} holds a checkpoint without training state; train into an empty --out folder.")
        return None
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    previous = json.loads(state["identity"])
    identity = json.loads(json.dumps(identity))  # as saved: tuples become lists
    if previous != identity:
        changed = sorted(k for k in identity if previous.get(k) != identity[k])
        raise ConfigError(
            f"{out} holds a run with other {', '.join(changed)} (base weights, data or settings); rerun with the "
            "same ones to resume, or train into another --out folder."
        )
    load_trained_state(model, composer, load_file(str(out / STATE_DIR / "last.safetensors")))
    optimizer.load_state_dict(state["optimizer"])
    return SavedState(int(state["epoch"]), json.loads(state["history"]), json.loads(state["best"]))
