"""Layers point one way: shared/ (the model package) ← db/ ← the job runner ← services ← the CLI. Importing
anything in shared/ must load none of the layers above it."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import db
import jobqueue
import shared

SERVICES = ("ingest", "trainer", "inferencer", "analysis", "simulator", "xpvae")
ABOVE = {"shared": ("db", "jobqueue", *SERVICES), "db": ("jobqueue", *SERVICES), "jobqueue": SERVICES}

_PROBE = """
import importlib, json, sys
above = tuple(sys.argv[1].split(","))
found = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    bad = sorted(m for m in sys.modules if m.split(".")[0] in above)
    if bad:
        found[name] = bad
        break
print(json.dumps(found))
"""


def modules_of(package) -> list[str]:
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.walk_packages(package.__path__)
                  if not m.ispkg and m.name != "migrations")


def _higher_layers_loaded(package) -> dict:
    """One fresh interpreter, the package's modules imported one by one: the first to pull in a higher layer
    is named, with what it loaded."""
    out = subprocess.run([sys.executable, "-c", _PROBE, ",".join(ABOVE[package.__name__]), *modules_of(package)],
                         capture_output=True, text=True, check=True, cwd=Path(shared.__file__).parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_shared_loads_no_higher_layer():
    modules = modules_of(shared)
    assert "shared.artifact" in modules and "shared.errors" in modules and "shared.params" in modules
    assert _higher_layers_loaded(shared) == {}


def test_importing_db_loads_neither_the_job_runner_nor_a_service():
    assert "db.job_store" in modules_of(db) and "db.engine" in modules_of(db)
    assert _higher_layers_loaded(db) == {}


def test_the_job_runner_names_no_service():
    """jobqueue/ knows job kinds only as the services register them (xpvae/services.py loads the services)."""
    modules = set(modules_of(jobqueue))
    assert {"jobqueue.runner", "jobqueue.registry", "jobqueue.tasks", "jobqueue.celery_app"} <= modules
    assert _higher_layers_loaded(jobqueue) == {}


def test_the_probe_notices_an_upward_import():
    """The check itself can fail: a module of shared/ that imports db is reported by name."""
    out = subprocess.run([sys.executable, "-c", _PROBE, "db", "shared.xp", "db.selection"],
                         capture_output=True, text=True, check=True, cwd=Path(shared.__file__).parents[1])
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(found) == ["db.selection"] and "db.selection" in found["db.selection"]
