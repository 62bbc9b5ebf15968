# One image for every worker; the command picks the queue. GPU users: build with
# --build-arg TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" (or similar).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
ENV PYTHONUNBUFFERED=1 XPVAE_HOME=/var/lib/xpvae
WORKDIR /app
RUN pip install --no-cache-dir $TORCH_SPEC
COPY pyproject.toml setup.py README.md ./
COPY shared shared
COPY db db
COPY ingest ingest
COPY trainer trainer
COPY inferencer inferencer
COPY analysis analysis
COPY xpvae xpvae
# gcc only while installing: it builds the two optional C extensions (XP array-text parser, COPY receiver)
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && python -c "import ingest.readers._arraytext, db._pgcopy" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
USER nobody
CMD ["xpvae", "--help"]
