"""The container stack checked with real tools, without a Docker engine:
- `docker-compose config` (the docker-compose CLI: `apt-get install docker-compose`; .ci/run installs it)
  renders docker-compose.yml, alone and with docker-compose.gpu.yml, from the compose.env `make up` writes;
- the wheel built from exactly what the Dockerfile copies carries the compiled extensions, and the Dockerfile's
  own import check passes in a fresh environment outside the source tree, as in the image."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import click
import pytest
import yaml

from xpvae import compose

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_compose import _stages, copy_sources  # noqa: E402  (the Dockerfile's reading, defined once)


def _clean_env() -> dict[str, str]:
    """This process's environment without XPVAE_* (a developer's own settings must not leak into the check)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("XPVAE_") and k != "PYTHONPATH"}


def _compose_cli() -> list[str]:
    try:
        return compose.compose_program()[0]
    except click.ClickException:
        pytest.fail("the docker-compose CLI validates docker-compose.yml: `apt-get install docker-compose` "
                    "(.ci/run installs it)")


def _config(env_file: Path, gpu: bool) -> subprocess.CompletedProcess:
    args = compose.compose_args(_compose_cli(), env_file, gpu)
    return subprocess.run([*args, "config"], capture_output=True, text=True, env=_clean_env(), cwd=REPO, timeout=120)


def _ports(svc: dict) -> list[str]:
    """Published ports as host_ip:published:target, from compose v1 (strings) or v2 (mappings) output."""
    out = []
    for p in svc.get("ports", []):
        out.append(p.split("/")[0] if isinstance(p, str) else f"{p.get('host_ip', '')}:{p['published']}:{p['target']}")
    return out


def _binds(svc: dict) -> dict[str, str]:
    """target -> source of the service's volumes, from compose v1 (strings) or v2 (mappings) output."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        out[target] = source
    return out


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_compose_file_renders_from_the_env_file_make_up_writes(tmp_path, gpu):
    values = compose.compose_settings({}, {"XPVAE_DATA_DIR": str(tmp_path / "my data")})
    compose.write_compose_env(tmp_path / "compose.env", values)
    result = _config(tmp_path / "compose.env", gpu)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == values["XPVAE_DB_PASSWORD"]
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == values["XPVAE_BROKER_PASSWORD"]
    trainer_env = services["trainer-worker"]["environment"]
    assert f":{values['XPVAE_DB_PASSWORD']}@postgres:5432/" in trainer_env["XPVAE_DATABASE_URL"]
    assert _ports(services["postgres"]) == ["127.0.0.1:55432:5432"]
    assert _ports(services["rabbitmq"]) == ["127.0.0.1:55672:5672"]
    assert sorted(n for n, s in services.items() if _ports(s)) == ["postgres", "rabbitmq"]
    for name in ("ingest-worker", "trainer-worker", "inferencer-worker", "analysis-worker"):
        assert _binds(services[name])["/data"] == str(tmp_path / "my data")
        assert services[name]["image"] == services["migrate"]["image"] == "xpvae:local"
    index = services["migrate"]["build"]["args"]["TORCH_INDEX_URL"]
    assert index == ("https://pypi.org/simple" if gpu else "https://download.pytorch.org/whl/cpu")
    assert ("deploy" in services["trainer-worker"]) is gpu
    assert not any("deploy" in s for n, s in services.items() if n != "trainer-worker")


def test_compose_refuses_to_run_without_passwords(tmp_path):
    (tmp_path / "compose.env").write_text("XPVAE_PG_PORT=55432\n")
    result = _config(tmp_path / "compose.env", gpu=False)
    assert result.returncode != 0
    assert re.search(r"XPVAE_(DB|BROKER)_PASSWORD", result.stderr), result.stderr


# --- the wheel, as the image's build installs it -----------------------------------------------------------------
@pytest.mark.slow
def test_wheel_carries_the_extensions_and_the_dockerfile_check_passes_outside_the_tree(tmp_path):
    context = tmp_path / "context"            # what the wheel stage copies, without in-tree build output
    context.mkdir()
    for rel in copy_sources():
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, context / rel, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
        else:
            shutil.copy2(src, context / rel)
    wheels = tmp_path / "wheels"
    # the venv's setuptools (no download); the image's build uses an isolated one, the same backend
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "--wheel-dir", str(wheels), str(context)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("xpvae-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for pattern in (r"ingest/readers/_arraytext\..*\.so", r"db/_pgcopy\..*\.so", r"shared/_wchi2\..*\.so",
                    r"db/migrations/env\.py",
                    r"db/migrations/versions/.+\.py"):
        assert any(re.fullmatch(pattern, n) for n in names), f"{pattern} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    # a fresh environment holding only the wheel; third-party packages from this venv, after it on sys.path
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    py = fresh / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    outside = tmp_path / "run"
    outside.mkdir()
    env = {**_clean_env(), "XPVAE_HOME": str(tmp_path / "home"),
           "XPVAE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"}
    # the Dockerfile's own check, run as the image runs it
    check_line = next(line for line in _stages()[1] if "ingest.readers._arraytext" in line)
    argv = shlex.split(check_line[len("RUN "):].split(" && ")[0])
    assert argv[:2] == ["python", "-c"]
    check = subprocess.run([py, "-c", argv[2]], cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    where = subprocess.run([py, "-c", "import ingest.readers._arraytext as a, db._pgcopy as p, shared._wchi2 as w; "
                            "print(a.__file__); print(p.__file__); print(w.__file__)"],
                           cwd=outside, env=env, capture_output=True, text=True, check=True)
    for path in where.stdout.split():
        assert Path(path).is_relative_to(site) and path.endswith(".so"), path
    # the console script, with the migrations packaged
    upgraded = subprocess.run([fresh / "bin" / "xpvae", "db", "upgrade"], cwd=outside, env=env,
                              capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert "is at migration" in upgraded.stdout


# --- the /data rule through a real worker --------------------------------------------------------------------------
def _photometry(path: Path, ids: range) -> None:
    rows = "".join(f"{i},{10000 + i}.5,15.1,15.5,14.6\n" for i in ids)
    path.write_text("source_id,phot_g_mean_flux,phot_g_mean_mag,phot_bp_mean_mag,phot_rp_mean_mag\n" + rows)


def test_worker_opens_the_translated_path_not_the_host_one(stack, pg_engine, tmp_path):
    """The host folder and the worker's view of it are different folders here (as a container mount is): the
    host holds a 3-row file, the 'mount' a 7-row file of the same name. The job is checked against the host
    and runs on the mount's file."""
    import sqlalchemy as sa
    host, mount = tmp_path / "host data", tmp_path / "mount"
    (host / "phot").mkdir(parents=True)
    (mount / "phot").mkdir(parents=True)
    _photometry(host / "phot" / "g.csv", range(1001, 1004))
    _photometry(mount / "phot" / "g.csv", range(2001, 2008))
    _photometry(tmp_path / "elsewhere.csv", range(3001, 3003))      # exists on the host, outside the folder
    stack.start_worker("ingest")
    stack.env.update(XPVAE_DATA_DIR=str(host), XPVAE_WORKER_DATA_DIR=str(mount))    # the CLI's view only
    stack.cli("ingest", "photometry", str(host / "phot" / "g.csv"), "--wait")
    refused = stack.cli("ingest", "photometry", str(tmp_path / "elsewhere.csv"), check=False)
    assert refused.returncode == 2 and "XPVAE_DATA_DIR" in refused.stderr
    with pg_engine.connect() as conn:
        ids = sorted(conn.execute(sa.text("SELECT source_id FROM photometry")).scalars())
        params = [p for p in conn.execute(sa.text("SELECT params FROM jobs")).scalars()]
    assert ids == list(range(2001, 2008))
    assert len(params) == 1 and str(mount / "phot" / "g.csv") in str(params[0])
