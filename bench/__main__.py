"""``python -m bench``: run the benchmark suite (same options as bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
