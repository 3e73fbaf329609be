"""sketchtext: sketch + text composed queries for Qdrant-backed image search.

Importing this package is cheap: torch, open_clip, celery and click load only when a model or front end is used.
"""

from sketchtext.plugin.errors import SketchTextError

__all__ = ["SketchTextError"]
__version__ = "0.1.0"
