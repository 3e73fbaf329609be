"""Pretrained weights from the Hugging Face hub: found in the cache, or the hub asked once, never retried offline.

huggingface_hub retries an unreachable hub five times with back-off (about a minute) before it gives up; a user
offline should hear at once what to do instead.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from sketchtext.plugin.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0


def hub_files(arch: str, tag: str) -> tuple[str, list[str]] | None:
    """The hub repository and the files open_clip would fetch for a pretrained tag (None: not a hub download)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none: give a weights file"
        raise ConfigError(f"Unknown pretrained tag {tag!r} for {arch}; valid tags: {tags}.")
    hub = str(cfg.get("hf_hub") or "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # as open_clip reads it: "org/repo/" or "org/repo/file"
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return repo, names


def is_cached(repo: str, names: list[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host does not answer within a few seconds (one attempt)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        log.debug("hub %s unreachable: %s", constants.ENDPOINT, exc)
        return False
    return True


@contextmanager
def weights_from_hub(spec: str, arch: str, tag: str) -> Iterator[None]:
    """Around open_clip's loading of `arch@tag`: fail at once when the weights are neither cached nor downloadable;
    when they are cached and the hub is out of reach, load them from the cache without asking it."""
    from huggingface_hub import constants

    files = hub_files(arch, tag)
    if files is None or hub_reachable():
        yield
        return
    if not is_cached(*files):
        raise ModelUnavailableError(unavailable_message(spec, arch))
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # read at each call: no request, no retries
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline


def unavailable_message(spec: str, arch: str) -> str:
    return (
        f"Could not obtain weights for {spec}: they are not in the Hugging Face cache and the hub cannot be reached "
        "(offline, or HF_HUB_OFFLINE is set). Download the checkpoint on a connected machine (e.g. "
        "open_clip_pytorch_model.bin from the model's hub page) and point at it: "
        f"--model open_clip:{arch}@/path/to/open_clip_pytorch_model.bin (or SKETCHTEXT_MODEL__SPEC); "
        "or, offline, use the bundled demo model (see the README's 'Using it')."
    )
