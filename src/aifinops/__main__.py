"""`python -m aifinops` runs the CLI."""

from aifinops.cli.main import main

main()
