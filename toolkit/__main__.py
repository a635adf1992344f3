"""`python -m edgevision.toolkit` is the `edgevision` command."""

from .cli import main

main()
