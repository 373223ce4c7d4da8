"""`python -m deepae`: the command line, as torchrun starts it (`torchrun ... -m deepae train`)."""

import sys

from deepae.cli import main

sys.exit(main())
