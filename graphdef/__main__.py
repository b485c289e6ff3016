"""`python -m graphdef` is the `graphdef` command."""
from .tools.cli import console

if __name__ == "__main__":  # importing this module (pydoc, a test collector) must not run the command
    console()
