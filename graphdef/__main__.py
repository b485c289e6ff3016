"""`python -m graphdef` is the `graphdef` command."""
from .cli import console

console()
