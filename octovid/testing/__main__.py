"""``python -m octovid.testing``: serve a simulator until interrupted."""

import sys

from ._standalone import main

if __name__ == "__main__":
    sys.exit(main())
