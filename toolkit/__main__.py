"""`python -m edgevision.toolkit` is the `edgevision` command."""

from .entry import main

main()
