"""``python -m pipeline`` runs the kmseg CLI."""

import sys

from pipeline.cli import main

sys.exit(main())
