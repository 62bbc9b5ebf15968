"""Layers point one way: shared/ (the model package) ← db/ ← the job runner ← services ← the CLI. Importing
anything in shared/ must load none of the layers above it."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import shared

ABOVE_SHARED = ("db", "jobqueue", "ingest", "trainer", "inferencer", "analysis", "simulator", "xpvae")
# The job runner still lives in shared/ until it moves to its own package above db/ (issue #14).
RUNNER_NOT_YET_MOVED = {"shared.jobs", "shared.tasks"}

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


def shared_modules() -> list[str]:
    names = [f"shared.{m.name}" for m in pkgutil.walk_packages(shared.__path__) if not m.ispkg]
    return sorted(set(names) - RUNNER_NOT_YET_MOVED)


def test_importing_shared_loads_no_higher_layer():
    modules = shared_modules()
    assert "shared.artifact" in modules and "shared.errors" in modules and "shared.params" in modules
    # one fresh interpreter, modules imported one by one: the first to pull in a higher layer is named
    out = subprocess.run([sys.executable, "-c", _PROBE, ",".join(ABOVE_SHARED), *modules],
                         capture_output=True, text=True, check=True, cwd=Path(shared.__file__).parents[1])
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_the_probe_notices_an_upward_import():
    """The check itself can fail: a module of shared/ that imports db is reported by name."""
    out = subprocess.run([sys.executable, "-c", _PROBE, "db", "shared.xp", "db.selection"],
                         capture_output=True, text=True, check=True, cwd=Path(shared.__file__).parents[1])
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(found) == ["db.selection"] and "db.selection" in found["db.selection"]
