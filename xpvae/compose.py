"""The stack in containers (docker-compose.yml): its settings, the env files `make up` writes, the compose
command line, and how the CLI names input files for workers that run in containers.

Files under $XPVAE_HOME/stack/ (both mode 600: they hold passwords):
- compose.env: the compose variables (passwords, host ports, data folder). Written once and reused, because
  PostgreSQL keeps the password its volume was created with.
- env: what the host's `xpvae` needs to reach the stack (`source var/stack/env`).

Input files: containers see one host folder, XPVAE_DATA_DIR (default ./data), mounted read-only at /data. In
docker mode the env file sets XPVAE_WORKER_DATA_DIR=/data, and the CLI sends a path under XPVAE_DATA_DIR as the
same path under /data; any other path is refused (exit 2) before a job is created.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Mapping

import click

from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
GPU_FILE = REPO / "docker-compose.gpu.yml"       # CUDA torch in the image, a GPU for the trainer
CONTAINER_DATA_DIR = "/data"                     # where docker-compose.yml mounts XPVAE_DATA_DIR
PASSWORD_VARS = ("XPVAE_DB_PASSWORD", "XPVAE_BROKER_PASSWORD")
# Host ports on 127.0.0.1, away from a local PostgreSQL (5432) or RabbitMQ (5672); the same defaults as in
# docker-compose.yml (tests/unit/test_compose.py checks).
PORT_DEFAULTS = {"XPVAE_PG_PORT": "55432", "XPVAE_BROKER_PORT": "55672"}
# Other compose variables a user may set; carried into compose.env so later `make` calls see the same stack.
PASSTHROUGH_VARS = ("XPVAE_IMAGE", "XPVAE_TORCH_INDEX_URL", "XPVAE_DEVICE")
# URL-safe without escaping: a password goes into the database and broker URLs as it is.
_PASSWORD = re.compile(r"[A-Za-z0-9._~-]{12,128}")


# --- settings --------------------------------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (the value optionally in single quotes), as write_compose_env writes them."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def compose_settings(stored: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The compose variables: the environment over what compose.env stored; passwords generated when neither
    has one; the data folder made absolute. Raises click.ClickException on a value compose cannot carry."""
    values = {k: v for k, v in stored.items() if v}
    values.update({k: environ[k] for k in (*PASSWORD_VARS, *PORT_DEFAULTS, *PASSTHROUGH_VARS, "XPVAE_DATA_DIR")
                   if environ.get(k)})
    for var in PASSWORD_VARS:
        values.setdefault(var, secrets.token_urlsafe(24))
        if not _PASSWORD.fullmatch(values[var]):
            raise click.ClickException(f"{var}: 12-128 characters from A-Z a-z 0-9 . _ ~ - (it goes into a URL)")
    for var, default in PORT_DEFAULTS.items():
        port = values.setdefault(var, default)
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            raise click.ClickException(f"{var} must be a port number from 1 to 65535, not {port!r}")
    values["XPVAE_DATA_DIR"] = str(Path(values.get("XPVAE_DATA_DIR") or REPO / "data").expanduser().resolve())
    for key, value in values.items():
        if "'" in value or "\n" in value:
            raise click.ClickException(f"{key}: quotes and line breaks cannot be passed to compose ({value!r})")
    return values


def cli_env(values: Mapping[str, str], home: Path) -> dict[str, str]:
    """What the host's `xpvae` exports to use the containerised stack (through the ports on 127.0.0.1)."""
    return {
        "XPVAE_DATABASE_URL": f"postgresql+psycopg2://xpvae:{values['XPVAE_DB_PASSWORD']}"
                              f"@127.0.0.1:{values['XPVAE_PG_PORT']}/xpvae",
        "XPVAE_BROKER_URL": f"amqp://xpvae:{values['XPVAE_BROKER_PASSWORD']}@127.0.0.1:{values['XPVAE_BROKER_PORT']}//",
        "XPVAE_HOME": str(home),
        "XPVAE_DATA_DIR": values["XPVAE_DATA_DIR"],
        "XPVAE_WORKER_DATA_DIR": CONTAINER_DATA_DIR,
    }


# --- files -----------------------------------------------------------------------------------------------------
def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (also when it already existed with a wider mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_compose_env(path: Path, values: Mapping[str, str]) -> None:
    write_private(path, "# compose variables written by `make up`; keep: the database volume uses this password\n"
                  + "".join(f"{k}='{v}'\n" for k, v in sorted(values.items())))


def write_shell_env(path: Path, exports: Mapping[str, str], unset: tuple[str, ...] = ()) -> None:
    """The file users `source`: values shell-quoted (a socket URL holds '?', a glob character)."""
    lines = [f"unset {' '.join(unset)}\n"] if unset else []
    lines += [f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()]
    write_private(path, "".join(lines))


# --- the compose command ---------------------------------------------------------------------------------------
def compose_program() -> tuple[list[str], bool]:
    """The compose CLI and whether it is v2 (`docker compose`, which has `up --wait`) or v1 (`docker-compose`)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"], True
    if shutil.which("docker-compose"):
        return ["docker-compose"], False
    raise click.ClickException("a Docker engine runs but neither `docker compose` nor `docker-compose` is installed")


def compose_args(program: list[str], env_file: Path, gpu: bool) -> list[str]:
    files = [COMPOSE_FILE, GPU_FILE] if gpu else [COMPOSE_FILE]
    return [*program, "--env-file", str(env_file), *(a for f in files for a in ("-f", str(f)))]


def gpu_requested(environ: Mapping[str, str]) -> bool:
    value = (environ.get("XPVAE_GPU") or "0").strip().lower()
    if value not in ("0", "1", "no", "yes", "false", "true"):
        raise click.ClickException(f"XPVAE_GPU must be 1 or 0, not {value!r}")
    return value in ("1", "yes", "true")


def mask_password(url: str) -> str:
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


# --- input paths -----------------------------------------------------------------------------------------------
def worker_path(path: str, environ: Mapping[str, str] | None = None) -> str:
    """The name under which the workers open a host input file (see the module docstring for the rule).
    Jobs that run in this process (no XPVAE_BROKER_URL) and local workers get the absolute host path."""
    env = os.environ if environ is None else environ
    host_path = Path(path).expanduser().resolve()     # links resolved: a link out of the folder leads nowhere there
    mount = env.get("XPVAE_WORKER_DATA_DIR")
    if not mount or Settings.from_env(env).embedded:
        return str(host_path)
    if not PurePosixPath(mount).is_absolute():
        raise click.UsageError(f"XPVAE_WORKER_DATA_DIR must be an absolute path, not {mount!r}")
    if not env.get("XPVAE_DATA_DIR"):
        raise click.UsageError("XPVAE_WORKER_DATA_DIR is set (workers in containers) but XPVAE_DATA_DIR is not: "
                               "`source var/stack/env` after `make up`")
    data_dir = Path(env["XPVAE_DATA_DIR"]).expanduser().resolve()
    try:
        inside = host_path.relative_to(data_dir)
    except ValueError:
        raise click.BadParameter(f"{path}: the workers run in containers and see only {data_dir} (XPVAE_DATA_DIR, "
                                 f"mounted at {mount}); copy or move the file there") from None
    return str(PurePosixPath(mount, *inside.parts))


def refuse_host_artifacts(in_container: str, environ: Mapping[str, str] | None = None) -> None:
    """A command that writes a model file here, for workers in containers that could not read it, stops with
    the command to run inside a container instead (exit 2)."""
    env = os.environ if environ is None else environ
    if env.get("XPVAE_WORKER_DATA_DIR") and not Settings.from_env(env).embedded:
        raise click.UsageError("the workers run in containers and cannot read model files saved on this host; "
                               "run it there: docker compose --env-file var/stack/compose.env exec trainer-worker "
                               + in_container)
