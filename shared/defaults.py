"""Defaults a user can see, defined once: the CLI options, the job handlers (for jobs submitted without the
value) and the library functions all refer to these names, so code, `--help` and the README cannot drift."""
from __future__ import annotations

SEED = 0                  # training, analysis and simulation seeds
STARS_PER_SHARD = 25_000  # inference: stars per shard when --shards is 0
ALPHA_FOLDS = 5           # analyze alpha: cross-validation folds
ALPHA_BOOTSTRAP = 500     # analyze alpha: bootstrap resamples of stars for the 95 % intervals
SPLIT = (0.8, 0.1, 0.1)   # train: fractions of the usable stars for training / validation / test
LATENT_DIM = 6            # train: latent dimensions (the published model's)
HIDDEN = (90, 70, 50, 30, 10)   # train: encoder widths (the published model's)
WEIGHT_DECAY = 0.01       # train: AdamW weight decay (the published recipe's)
CHECKPOINT_EVERY = 10     # train: epochs between checkpoints
BASELINE_LABELS = ("teff", "logg", "m_h", "alpha_m")   # train-baseline: the APOGEE labels it maps from
BASELINE_EPOCHS = 50      # train-baseline (CLI)
BASELINE_BATCH_SIZE = 1024
BASELINE_LR = 1e-3
INFER_BATCH_SIZE = 8192   # infer: stars per model batch
RECONSTRUCTION_MAX_STARS = 50_000   # analyze reconstruction: held-out stars compared at most
