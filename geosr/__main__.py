"""``python -m geosr`` (also what ``torchrun -m geosr train ...`` runs)."""

from geosr.cli.app import main

main()
