"""Only the compiled part of the build lives here; everything else is in pyproject.toml.

The array-text parser is optional: without a C compiler the install still succeeds and the readers use
their pure-Python/pyarrow path (same results, ~2x slower on correlations; see ingest/readers/numbers.py).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("ingest.readers._arraytext", ["ingest/readers/_arraytext.c"],
                             extra_compile_args=["-O3"], optional=True)])
