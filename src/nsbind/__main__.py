"""``python -m nsbind``: the nsbind command."""

import sys

from nsbind.cli import main

if __name__ == "__main__":
    sys.exit(main())
