"""``python -m critic ...``: the same command line as the ``critic`` script."""

import sys

from critic.cli import main

if __name__ == "__main__":
    sys.exit(main())
