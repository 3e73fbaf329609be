"""A trained sketchtext checkpoint on disk: `model.safetensors` (C_v2w, P^L, G and V's tuned LayerNorms) and
`config.json` (base model, dimensions, method settings, prompt, training data, best combine mode, fingerprint).

The fingerprint is the hash of the tensors file; a collection filled with a checkpoint's image tower is bound to
`<base fingerprint>+<checkpoint fingerprint>`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from sketchtext.plugin.errors import CheckpointError
from sketchtext.plugin.files import write_atomic
from sketchtext.plugin.model.composer import (
    Composer,
    ComposerCfg,
    build_composer,
    layernorm_state,
    load_layernorm_state,
)

FORMAT = "sketchtext-checkpoint/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint folder's config, checked against its tensors file."""

    path: Path
    config: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.config["fingerprint"])

    @property
    def base_spec(self) -> str:
        return str(self.config["base"]["spec"])

    @property
    def base_fingerprint(self) -> str:
        return str(self.config["base"]["fingerprint"])

    @property
    def combine(self) -> str:
        return str(self.config.get("combine", {}).get("mode", "composed"))

    @property
    def composer_cfg(self) -> ComposerCfg:
        known = {f.name for f in fields(ComposerCfg)}
        return ComposerCfg(**{k: v for k, v in self.config["composer"].items() if k in known})


def tensors_digest(path: Path) -> str:
    return "ckpt:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def trained_state(model: Any, composer: Composer) -> dict[str, torch.Tensor]:
    """What a checkpoint stores: V's LayerNorm parameters and the composer's, as contiguous fp32 CPU tensors."""
    state = {name: value for name, value in layernorm_state(model).items()}
    state.update({f"composer.{name}": value for name, value in composer.state_dict().items()})
    return {name: value.detach().to("cpu", torch.float32).contiguous().clone() for name, value in state.items()}


def load_trained_state(model: Any, composer: Composer, state: dict[str, torch.Tensor]) -> None:
    load_layernorm_state(model, {k: v for k, v in state.items() if k.startswith("visual.")})
    own = {k.removeprefix("composer."): v for k, v in state.items() if k.startswith("composer.")}
    try:
        composer.load_state_dict(own)
    except RuntimeError as exc:
        raise CheckpointError(f"The checkpoint's composer does not fit this base model: {exc}") from exc


def save_checkpoint(folder: Path, model: Any, composer: Composer, config: dict[str, Any]) -> CheckpointInfo:
    """Write the trained tensors and the config (with the tensors' fingerprint) into `folder`."""
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    data = save(trained_state(model, composer))
    write_atomic(folder / WEIGHTS, data)
    config = {"format": FORMAT, **config, "fingerprint": tensors_digest(folder / WEIGHTS)}
    write_atomic(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
    return CheckpointInfo(folder, config)


def update_config(info: CheckpointInfo, **changes: Any) -> CheckpointInfo:
    """Change config fields that do not touch the tensors (e.g. the measured best combine mode)."""
    config = {**info.config, **changes}
    write_atomic(info.path / CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
    return CheckpointInfo(info.path, config)


def read_checkpoint(folder: Path | str) -> CheckpointInfo:
    """Read and check a checkpoint folder written by `sketchtext train`."""
    folder = Path(folder).expanduser()
    config_path, weights = folder / CONFIG, folder / WEIGHTS
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"{folder} is not a sketchtext checkpoint (it needs {CONFIG} and {WEIGHTS}); "
            "pass the --out folder of `sketchtext train`."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc}); re-copy the checkpoint folder.") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} has format {config.get('format')!r}, not {FORMAT!r}; retrain it.")
    if tensors_digest(weights) != config.get("fingerprint"):
        raise CheckpointError(
            f"{weights} does not match the fingerprint in {config_path}: the checkpoint was modified or partly "
            "copied; re-copy the whole folder."
        )
    return CheckpointInfo(folder, config)


def apply_checkpoint(model: Any, tokenizer: Any, info: CheckpointInfo) -> Composer:
    """Put a checkpoint's tuned LayerNorms into the model's image tower and return its composer (eval mode)."""
    from safetensors.torch import load_file

    dims = info.config.get("dims", {})
    table = model.token_embedding.weight
    if dims and (
        dims.get("token") != table.shape[1] or dims.get("context_length") != model.positional_embedding.shape[0]
    ):
        raise CheckpointError(
            f"Checkpoint {info.path} was trained for token width {dims.get('token')}, this model has "
            f"{table.shape[1]}; load it with its base model {info.base_spec}."
        )
    with torch.random.fork_rng(devices=[]):  # the fresh init is overwritten; leave the caller's RNG alone
        composer = build_composer(model, tokenizer, info.composer_cfg)
    state = load_file(str(info.path / WEIGHTS), device=str(table.device))
    load_trained_state(model, composer, state)
    return composer.to(device=table.device, dtype=table.dtype).eval()
