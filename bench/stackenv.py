"""A private stack for the benchmarks that go through real Celery workers (bench_stack, bench_ingest_fanout):
a scratch PostgreSQL database, a RabbitMQ vhost of its own, worker processes, and a job submitted and waited
for. Everything is removed at the end, even on failure."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ADMIN_URL = os.environ.get("XPVAE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
BROKER_ROOT = os.environ.get("XPVAE_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672")
REPO = Path(__file__).resolve().parents[1]


class BenchStack:
    """A private vhost + the bench database URL, and the worker processes of this run."""

    def __init__(self, db_url: str, home: Path):
        self.vhost = f"xpvae_bench_{os.getpid()}"
        self.broker = f"{BROKER_ROOT}/{self.vhost}"
        # one torch thread a worker process: the workers share this machine's cores
        self.env = dict(os.environ, XPVAE_DATABASE_URL=db_url, XPVAE_BROKER_URL=self.broker, XPVAE_HOME=str(home),
                        XPVAE_DEVICE="cpu", XPVAE_TORCH_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.home = home
        self.procs: list[subprocess.Popen] = []
        self.ctl = shutil.which("rabbitmqctl")
        if self.ctl is None:
            raise RuntimeError("rabbitmqctl not found: the stack benchmarks need a local RabbitMQ")
        subprocess.run([self.ctl, "add_vhost", self.vhost], check=True, capture_output=True)
        subprocess.run([self.ctl, "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True)

    @property
    def settings(self):
        """The workers' settings: this process publishes to the bench stack's broker with them."""
        from shared.settings import Settings
        return Settings.from_env(self.env)

    def start_worker(self, processes: int, queue: str, loglevel: str = "WARNING") -> Path:
        """Start a worker process on ``queue``; returns its log file."""
        from xpvae.stack import worker_command
        log_path = self.home / f"worker-{len(self.procs)}.log"
        cmd = worker_command(queue, processes, ["-n", f"bench{len(self.procs)}@%h", "--loglevel", loglevel])
        with open(log_path, "ab") as log:     # the child keeps its own descriptor
            self.procs.append(subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        return log_path

    def wait_ready(self, log: Path, timeout: float = 180) -> None:
        """Wait until the worker logging to ``log`` says it is ready (needs loglevel INFO)."""
        end = time.monotonic() + timeout
        while " ready." not in log.read_text(errors="replace"):
            if time.monotonic() > end:
                raise RuntimeError(f"worker not ready after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.2)

    def run_job(self, engine, kind: str, params: dict, timeout: float) -> tuple[float, dict]:
        """Submit a job through the broker and wait for it: (seconds from submit to success, the job row)."""
        from db import job_store as jobs_db
        from db.job_status import TERMINAL, JobStatus
        from jobqueue import runner
        from xpvae.services import load_services
        load_services()
        t = time.perf_counter()
        job_id = runner.submit(kind, params, settings=self.settings, engine=engine)
        end = time.monotonic() + timeout
        while (job := jobs_db.get_job(engine, job_id))["status"] not in TERMINAL:
            if time.monotonic() > end:
                raise RuntimeError(f"{kind} job {job_id} did not finish in {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.05)
        seconds = time.perf_counter() - t
        if job["status"] != JobStatus.SUCCEEDED:
            raise RuntimeError(f"{kind} job {job_id} {job['status']}: {job['error']}\n{self.logs()}")
        return seconds, job

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.home.glob("worker-*.log")))

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        subprocess.run([self.ctl, "delete_vhost", self.vhost], capture_output=True)


@contextlib.contextmanager
def bench_stack(prefix: str) -> Iterator[tuple[sa.Engine, BenchStack, str]]:
    """(an engine on a new migrated database named ``prefix_<pid>``, a BenchStack on it, the database's name);
    the workers, the vhost, the database and the home folder are removed on leaving."""
    from db.engine import create_engine
    from db.migrate import upgrade
    name = f"{prefix}_{os.getpid()}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    db_url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    engine = create_engine(db_url)
    stack: BenchStack | None = None
    try:
        upgrade(engine)
        stack = BenchStack(db_url, home)
        yield engine, stack, name
    finally:
        if stack is not None:
            stack.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)
