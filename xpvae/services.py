"""Which services run jobs: importing a service's ``tasks`` module registers its job kinds with the runner.

The runner (jobqueue/) sits below the services and never names them; the entry points above them load them,
before they submit or run a job: the CLI (xpvae/jobrun.py, `xpvae job retry`), each Celery worker
(xpvae/worker.py) and the tests (tests/conftest.py). A service registers its kinds on its own queue, named
like its package, so a worker loads only its queue's service, and the CLI only as many as it takes to find the
kind it submits (a service imports torch, scikit-learn, ...: seconds a submit need not spend).
"""
from __future__ import annotations

import importlib

from jobqueue import registry

SERVICES = ("ingest", "trainer", "inferencer", "analysis")      # cheapest import first


def load_services(names: tuple[str, ...] = SERVICES) -> None:
    """Register the job kinds of ``names`` (all services by default); importing again is free."""
    for name in names:
        if name not in SERVICES:
            raise ValueError(f"no service {name!r}; services: {', '.join(SERVICES)}")
        importlib.import_module(f"{name}.tasks")


def load_service_of(kind: str) -> None:
    """Load services, cheapest first, until one has registered ``kind`` (all of them if none does)."""
    for name in SERVICES:
        if registry.get(kind) is not None:
            return
        load_services((name,))
