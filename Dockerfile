# One image for every service; the command picks the queue. docker-compose.yml builds it once and tags it
# ${XPVAE_IMAGE:-xpvae:local}.
#
# torch: the CPU build by default. For a GPU, install the CUDA build (PyPI's Linux torch wheels are CUDA builds):
#   docker build --build-arg TORCH_INDEX_URL=https://pypi.org/simple -t xpvae:local .
# (`XPVAE_GPU=1 make up` does this through docker-compose.gpu.yml.)
ARG PYTHON_IMAGE=python:3.11-slim

# --- stage 1: the wheel, with the two optional C extensions compiled (gcc lives only in this stage) ----------
FROM ${PYTHON_IMAGE} AS wheel
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Exactly these paths are in the build context (.dockerignore lists them; tests/unit/test_compose.py checks).
COPY pyproject.toml setup.py README.md ./
COPY shared shared
COPY db db
COPY jobqueue jobqueue
COPY ingest ingest
COPY simulator simulator
COPY trainer trainer
COPY inferencer inferencer
COPY analysis analysis
COPY xpvae xpvae
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- stage 2: the runtime: torch, the wheel, no source tree and no compiler ------------------------------------
FROM ${PYTHON_IMAGE}
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 XPVAE_HOME=/var/lib/xpvae
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Checked from / (no source tree here to shadow the installed packages): the compiled extensions are in the
# wheel, and the CLI starts with its migrations packaged.
WORKDIR /
RUN python -c "import psycopg2, ingest.readers._arraytext as a, db._pgcopy as p, shared._wchi2 as w; \
bad = [m.__file__ for m in (a, p, w) if '/site-packages/' not in m.__file__]; \
assert not bad, f'extensions not from site-packages: {bad}'; \
assert p.available(), 'db._pgcopy does not find the libpq of psycopg2'" \
    && xpvae --help >/dev/null
# XPVAE_HOME owned by the user the services run as; a fresh named volume mounted here inherits the ownership.
RUN mkdir -p "$XPVAE_HOME" /data && chown nobody:nogroup "$XPVAE_HOME"
# nobody's own home does not exist: caches (matplotlib, torch) go to XPVAE_HOME
ENV HOME=/var/lib/xpvae
USER nobody
WORKDIR /var/lib/xpvae
CMD ["xpvae", "--help"]
