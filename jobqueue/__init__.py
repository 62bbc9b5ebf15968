"""The job runner: submit, execute, fan out and the Celery task bodies. It sits above db/ and below the services.

- `jobqueue.registry`: the job kinds. Each service registers its own in its ``tasks.py``; the entry points load
  them (`xpvae.services.load_services`), so nothing here names a service.
- `jobqueue.runner`: `submit`, `execute`, `JobContext`, `fan_out` — one code path for the embedded mode (jobs
  run in-process) and the stack (Celery over RabbitMQ).
- `jobqueue.celery_app`: `make_celery_app(settings)`, the worker's Celery app, built from the settings it is given.
- `jobqueue.tasks`: the thin Celery task bodies that hand a job id to the runner.
"""
