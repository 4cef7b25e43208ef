"""``python -m safepip``."""

from safepip.cli import console_main

console_main()
