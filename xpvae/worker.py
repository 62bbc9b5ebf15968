"""A Celery worker for one queue: `python -m xpvae.worker QUEUE [celery worker options]` (what `xpvae worker`,
`make up` and docker-compose start). The settings are read from the environment here, once, and passed to the
app and through it to every job this worker runs."""
from __future__ import annotations

import sys

from jobqueue.celery_app import make_celery_app
from jobqueue.registry import QUEUES
from shared.settings import Settings
from xpvae.services import load_services


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in QUEUES:
        sys.exit(f"usage: python -m xpvae.worker {{{','.join(QUEUES)}}} [celery worker options]")
    queue, options = argv[0], argv[1:]
    settings = Settings.from_env()
    load_services((queue,))      # the kinds of this queue: its service registers them (xpvae/services.py)
    app = make_celery_app(settings)
    app.worker_main(["worker", "-Q", queue, *options])


if __name__ == "__main__":
    main(sys.argv[1:])
