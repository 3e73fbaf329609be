"""sketchtext: sketch + text composed queries for Qdrant-backed image search.

    from sketchtext.plugin import SketchTextPlugin, SketchTextQuery, load_settings

Importing this package is cheap: the names below load on first use (PEP 562), and torch, open_clip, celery and
click load only when a model or a front end is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sketchtext.plugin.errors import SketchTextError

if TYPE_CHECKING:
    from sketchtext.plugin.facade import EncodedQuery, SketchTextPlugin
    from sketchtext.plugin.search import SearchHit, SketchTextQuery
    from sketchtext.plugin.settings import Settings, load_settings

_LAZY = {
    "SketchTextPlugin": "sketchtext.plugin.facade",
    "EncodedQuery": "sketchtext.plugin.facade",
    "SketchTextQuery": "sketchtext.plugin.search",
    "SearchHit": "sketchtext.plugin.search",
    "Settings": "sketchtext.plugin.settings",
    "load_settings": "sketchtext.plugin.settings",
}

__all__ = ["EncodedQuery", "SearchHit", "Settings", "SketchTextError", "SketchTextPlugin", "SketchTextQuery"]
__all__ += ["load_settings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
