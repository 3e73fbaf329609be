"""`python -m sketchtext.cli`: the same as the `sketchtext` command."""

from sketchtext.cli.main import main

main()
