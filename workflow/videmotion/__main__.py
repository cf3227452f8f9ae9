"""``python -m videmotion``: the ``videmotion`` command (:mod:`videmotion.command`)."""

import sys

from .command import main

sys.exit(main())
