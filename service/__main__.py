"""`python -m service`: the same as `mmoe-serve`."""

import sys

from service.cli import main

sys.exit(main())
