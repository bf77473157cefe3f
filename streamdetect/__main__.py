"""`python -m streamdetect ...` is the `streamdetect` command."""

import sys

from streamdetect.cli import main

sys.exit(main())
