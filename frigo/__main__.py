"""Allow `python -m frigo`."""

from frigo.cli import main

main()
