"""``python -m safepip``."""

import sys

from safepip.cli import main

sys.exit(main())
