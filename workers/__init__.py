"""sketchtext."""
