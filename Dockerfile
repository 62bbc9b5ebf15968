# One image for every worker; the command picks the queue. GPU users: build with
# --build-arg TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" (or similar).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
ENV PYTHONUNBUFFERED=1 XPVAE_HOME=/var/lib/xpvae
WORKDIR /app
RUN pip install --no-cache-dir $TORCH_SPEC
COPY pyproject.toml README.md ./
COPY shared shared
COPY db db
COPY ingest ingest
COPY trainer trainer
COPY inferencer inferencer
COPY analysis analysis
COPY xpvae xpvae
RUN pip install --no-cache-dir .
USER nobody
CMD ["xpvae", "--help"]
