"""Data files shipped with sketchtext (model configs, prompt sets)."""
