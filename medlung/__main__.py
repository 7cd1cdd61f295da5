"""``python -m medlung`` runs the command line."""

from medlung.cli import main

main()
