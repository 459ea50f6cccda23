"""``python -m wamdata.cli``: what torchrun launches (``torchrun ... -m wamdata.cli label train-lam ...``)."""

import sys

from wamdata.cli import main

sys.exit(main())
