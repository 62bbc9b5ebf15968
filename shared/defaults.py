"""Defaults a user can see, defined once: the CLI options, the job handlers (for jobs submitted without the
value) and the library functions all refer to these names, so code, `--help` and the README cannot drift."""
from __future__ import annotations

SEED = 0                  # training, analysis and simulation seeds
STARS_PER_SHARD = 25_000  # inference: stars per shard when --shards is 0
ALPHA_FOLDS = 5           # analyze alpha: cross-validation folds
ALPHA_BOOTSTRAP = 500     # analyze alpha: bootstrap resamples of stars for the 95 % intervals
