"""`python -m graphdef` is the `graphdef` command."""
from .tools.cli import console

console()
