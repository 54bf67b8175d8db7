"""``python -m mmcore``: the command line, as torchrun starts it (``torchrun -m mmcore run ...``)."""

import sys

from mmcore.cli import main

sys.exit(main())
