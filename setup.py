"""Only the compiled parts of the build live here; everything else is in pyproject.toml.

Both extensions are optional: without a C compiler the install still succeeds and the pure paths run
(same results, slower):
- ingest.readers._arraytext: the XP array-text parser (ingest/readers/numbers.py), ~2x faster parsing;
- db._pgcopy: COPY TO STDOUT received without the GIL on psycopg2's own connection, which lets large
  training-set reads run as parallel streams (db/parallel_read.py);
- shared._wchi2: χ² with the full XP covariance, eight stars factorised side by side (shared/covariance.py),
  ~5x the batched LAPACK path on the CPU.
"""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension("ingest.readers._arraytext", ["ingest/readers/_arraytext.c"], extra_compile_args=["-O3"],
              optional=True),
    Extension("db._pgcopy", ["db/_pgcopy.c"], extra_compile_args=["-O2"], libraries=["dl"], optional=True),
    Extension("shared._wchi2", ["shared/_wchi2.c"], extra_compile_args=["-O3"], optional=True),
])
