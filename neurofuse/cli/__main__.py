"""``python -m neurofuse.cli`` (and ``torchrun -m neurofuse.cli``): the ``neurofuse`` command."""

import sys

from .main import main

sys.exit(main())
