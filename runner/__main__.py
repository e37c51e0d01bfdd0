"""`python -m runner` is the same command as `execute-code`."""

import sys

from runner.cli import main

sys.exit(main())
