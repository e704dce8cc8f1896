"""``python -m mirrord`` runs the command line."""

import sys

from mirrord.cli import main

sys.exit(main())
