"""``python -m xlspt.cli``: the ``xlspt`` command."""

import sys

from . import main

sys.exit(main())
