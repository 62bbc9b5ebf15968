"""`make up` / `make down` / `make status` / `make logs`, and the `xpvae worker` command.

With a Docker engine: docker-compose.yml, built once and started (xpvae/compose.py). Without one (this
project's own machines): local Celery worker processes, one per queue, against the local PostgreSQL and
RabbitMQ — started first if they are installed but stopped. Logs, pid files and the env file to `source` live
in $XPVAE_HOME/stack/; its file `mode` says which kind of stack `make up` started, for down, status and logs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import click

from shared.settings import Settings, get_settings

DEFAULT_DB_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/xpvae"
PG_SOCKET_DIR = "/var/run/postgresql"       # Debian/Ubuntu's; libpq's own default
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
# queue -> (concurrency, extra celery options). The trainer owns the GPU: one process, a fresh child per task,
# so CUDA is only ever touched inside the task and never in the parent.
WORKERS = {
    "ingest": (1, []),
    "trainer": (1, ["--max-tasks-per-child=1"]),
    "inferencer": (2, []),
    "analysis": (1, []),
}
# Two inference processes on a small machine: one torch thread each, or they contend (bench/bench_stack.py).
WORKER_ENV = {"inferencer": {"XPVAE_TORCH_THREADS": "1"}}


def stack_dir() -> Path:
    d = get_settings().home / "stack"
    d.mkdir(parents=True, exist_ok=True)
    return d


def local_database_url(socket_dir: str = PG_SOCKET_DIR) -> str:
    """The local stack's database URL: through PostgreSQL's Unix socket when it is there and lets us in (less
    work per message than loopback TCP: one-stream training-set reads measured up to 1.5x faster, see
    `python -m bench ingest`), else TCP on 127.0.0.1 (e.g. when the socket only allows 'peer' logins)."""
    if (Path(socket_dir) / ".s.PGSQL.5432").exists():
        import psycopg2
        try:
            psycopg2.connect(host=socket_dir, user="postgres", dbname="postgres", connect_timeout=3).close()
        except psycopg2.Error:
            return DEFAULT_DB_URL
        return f"postgresql+psycopg2://postgres@/xpvae?host={socket_dir}"
    return DEFAULT_DB_URL


def stack_env() -> dict[str, str]:
    env = dict(os.environ)
    if "XPVAE_DATABASE_URL" not in env:
        env["XPVAE_DATABASE_URL"] = local_database_url()
    env.setdefault("XPVAE_BROKER_URL", DEFAULT_BROKER_URL)
    env["XPVAE_HOME"] = str(get_settings().home)
    return env


def worker_command(queue: str, concurrency: int | None = None, extra: list[str] | None = None) -> list[str]:
    conc, opts = WORKERS[queue]
    return [sys.executable, "-m", "xpvae.worker", queue, "-n", f"{queue}@%h", "-c", str(concurrency or conc),
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", *opts, *(extra or [])]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if _port_open(host, port):
            return True
        time.sleep(0.5)
    return False


def ensure_local_services() -> None:
    """Start the local PostgreSQL and RabbitMQ if installed but stopped (needs the rights to do so)."""
    if not _port_open("127.0.0.1", 5432) and shutil.which("pg_ctlcluster"):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        click.echo(f"starting PostgreSQL {version} …")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    if not _port_open("127.0.0.1", 5672) and shutil.which("rabbitmq-server"):
        click.echo("starting RabbitMQ …")
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
    for name, port, wait in (("PostgreSQL", 5432, 30), ("RabbitMQ", 5672, 90)):
        if not _wait_port("127.0.0.1", port, wait):
            raise click.ClickException(f"{name} is not reachable on 127.0.0.1:{port} and could not be started")
    if shutil.which("rabbitmqctl"):
        # As deploy/rabbitmq.conf does for the compose stack: a long training task must not hit the
        # delivery-acknowledgement timeout (30 min by default). Best effort: needs rights on the broker.
        subprocess.run(["rabbitmqctl", "eval", "application:set_env(rabbit, consumer_timeout, 604800000)."],
                       capture_output=True, check=False, timeout=60)


def ensure_database(url: str) -> None:
    import sqlalchemy as sa
    target = sa.engine.make_url(url)
    if target.get_backend_name() != "postgresql":
        return
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).scalar():
            conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
            click.echo(f"created database {target.database}")
    admin.dispose()


def _pid(queue: str) -> int | None:
    f = stack_dir() / f"{queue}.pid"
    try:
        pid = int(f.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _docker_engine() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _mode() -> str:
    """'docker', 'docker-gpu' or 'local': what `make up` started, else what it would start."""
    f = stack_dir() / "mode"
    recorded = f.read_text().strip() if f.exists() else ""
    return recorded or ("docker" if _docker_engine() else "local")


def _compose(gpu: bool) -> tuple[list[str], bool]:
    """The compose command line for this stack (its env file and files) and whether it is compose v2."""
    from xpvae import compose
    env_file = stack_dir() / "compose.env"
    if not env_file.exists():
        raise click.ClickException(f"no {env_file}: start the stack with `make up`")
    program, v2 = compose.compose_program()
    return compose.compose_args(program, env_file, gpu), v2


def _run(cmd: list[str]) -> None:
    if subprocess.run(cmd).returncode != 0:
        raise click.ClickException(f"`{' '.join(cmd)}` failed")


def up() -> None:
    if _docker_engine():
        docker_up()
    else:
        local_up()


def prepare_docker_stack(d: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """Write compose.env, mode and env into the stack folder d, before anything starts, so that status, logs
    and down also work on a stack that failed to come up. Returns the compose variables and the GPU choice."""
    from xpvae import compose
    gpu = compose.gpu_requested(environ)
    values = compose.compose_settings(compose.read_env_file(d / "compose.env"), environ)
    Path(values["XPVAE_DATA_DIR"]).mkdir(parents=True, exist_ok=True)   # else the engine creates it, root-owned
    compose.write_compose_env(d / "compose.env", values)
    (d / "mode").write_text("docker-gpu\n" if gpu else "docker\n")
    compose.write_shell_env(d / "env", compose.cli_env(values, Settings.from_env(environ).home))
    return values, gpu


def docker_up() -> None:
    """Write the env files, build the one image and start the stack (docker-compose.yml)."""
    from xpvae import compose
    d = stack_dir()
    values, gpu = prepare_docker_stack(d, os.environ)
    cmd, v2 = _compose(gpu)
    _run([*cmd, "build"])      # the one image, tagged once; the workers reuse it
    _run([*cmd, "up", "-d", "--no-build", *(["--wait"] if v2 else [])])
    click.echo(f"stack up in containers; input files go in {values['XPVAE_DATA_DIR']} (seen there as "
               f"{compose.CONTAINER_DATA_DIR}).\nTo use it from this shell:  source {d / 'env'}")


def local_up() -> None:
    env = stack_env()
    ensure_local_services()
    ensure_database(env["XPVAE_DATABASE_URL"])
    from db.engine import create_engine
    from db.migrate import upgrade
    upgrade(create_engine(env["XPVAE_DATABASE_URL"]))
    d = stack_dir()
    for queue in WORKERS:
        if _pid(queue):
            click.echo(f"{queue:<11} already running (pid {_pid(queue)})")
            continue
        log = open(d / f"{queue}.log", "ab")
        proc = subprocess.Popen(worker_command(queue), env={**WORKER_ENV.get(queue, {}), **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        (d / f"{queue}.pid").write_text(str(proc.pid))
        click.echo(f"{queue:<11} worker started (pid {proc.pid}, log {d / (queue + '.log')})")
    from xpvae.compose import write_shell_env
    (d / "mode").write_text("local\n")
    # local workers open host paths as they are: no container path mapping (XPVAE_WORKER_DATA_DIR)
    write_shell_env(d / "env", {k: env[k] for k in ("XPVAE_DATABASE_URL", "XPVAE_BROKER_URL", "XPVAE_HOME")},
                    unset=("XPVAE_DATA_DIR", "XPVAE_WORKER_DATA_DIR"))
    click.echo(f"\nstack up. To use it from this shell:  source {d / 'env'}")


def down() -> None:
    mode = _mode()
    if mode.startswith("docker"):
        _run([*_compose(mode == "docker-gpu")[0], "down"])   # volumes kept: the database survives
    else:
        _stop_local_workers()
    (stack_dir() / "mode").unlink(missing_ok=True)


def _stop_local_workers() -> None:
    for queue in WORKERS:
        pid = _pid(queue)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)   # warm shutdown: running tasks finish or are redelivered (acks_late)
        for _ in range(100):
            if _pid(queue) is None:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        (stack_dir() / f"{queue}.pid").unlink(missing_ok=True)
        click.echo(f"{queue:<11} stopped")


def status() -> None:
    mode = _mode()
    if mode.startswith("docker"):
        from xpvae import compose
        _run([*_compose(mode == "docker-gpu")[0], "ps"])
        env = compose.cli_env(compose.read_env_file(stack_dir() / "compose.env"), get_settings().home)
        click.echo(f"database {compose.mask_password(env['XPVAE_DATABASE_URL'])}\n"
                   f"broker   {compose.mask_password(env['XPVAE_BROKER_URL'])}\n"
                   f"inputs   {env['XPVAE_DATA_DIR']} (seen by the workers as {env['XPVAE_WORKER_DATA_DIR']})")
        return
    env = stack_env()
    click.echo(f"PostgreSQL 127.0.0.1:5432  {'up' if _port_open('127.0.0.1', 5432) else 'DOWN'}")
    click.echo(f"RabbitMQ   127.0.0.1:5672  {'up' if _port_open('127.0.0.1', 5672) else 'DOWN'}")
    for queue in WORKERS:
        pid = _pid(queue)
        click.echo(f"worker {queue:<11} {'pid ' + str(pid) if pid else 'stopped'}")
    click.echo(f"database {env['XPVAE_DATABASE_URL']}\nbroker   {env['XPVAE_BROKER_URL']}")


def logs() -> None:
    mode = _mode()
    if mode.startswith("docker"):
        cmd = [*_compose(mode == "docker-gpu")[0], "logs", "-f", "--tail", "50"]
        os.execvp(cmd[0], cmd)
    files = [str(stack_dir() / f"{q}.log") for q in WORKERS if (stack_dir() / f"{q}.log").exists()]
    if not files:
        raise click.ClickException("no worker logs yet: run `make up`")
    os.execvp("tail", ["tail", "-n", "50", "-F", *files])


@click.command("worker")
@click.argument("queue", type=click.Choice(list(WORKERS)))
@click.option("--concurrency", "-c", type=int, help="worker processes (default per queue)")
def worker(queue: str, concurrency: int | None) -> None:
    """Run a Celery worker for one queue in the foreground (what docker-compose and `make up` start)."""
    os.execv(sys.executable, worker_command(queue, concurrency))


if __name__ == "__main__":
    actions = {"up": up, "down": down, "status": status, "logs": logs}
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        sys.exit(f"usage: python -m xpvae.stack {{{','.join(actions)}}}")
    try:
        actions[sys.argv[1]]()
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
