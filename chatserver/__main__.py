"""`python -m chatserver` is the same as the `chatserver` command."""

import sys

from chatserver.cli import main

sys.exit(main())
