"""``python -m modelberth_cli`` is ``modelberth`` (the stack and tests start children this way)."""

import sys

from modelberth_cli.main import main

sys.exit(main())
