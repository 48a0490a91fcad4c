"""`python -m sds ...` runs the `sds` command line."""

import sys

from sds.cli.main import main

sys.exit(main())
