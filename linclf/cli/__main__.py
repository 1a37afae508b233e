"""``python -m linclf.cli`` runs the command-line interface, as ``python -m linclf`` does."""
from . import main

main()
