"""``python -m aamflow.pipeline`` runs the CLI (used by tests that kill a real process)."""

from .cli import main

main()
