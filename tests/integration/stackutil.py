"""Helpers for the integration tests: worker processes and polling."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Stack:
    """Environment + worker processes for one test."""

    def __init__(self, db_url: str, broker: str, home: Path):
        # One torch thread per worker: torch otherwise takes every CPU (OMP_NUM_THREADS alone does not stop it), and
        # two-thread steps on a loaded 2-core machine measured 40x slower than one thread (19 s vs 0.45 s an epoch).
        self.env = dict(os.environ, XPVAE_DATABASE_URL=db_url, XPVAE_BROKER_URL=broker, XPVAE_HOME=str(home),
                        XPVAE_RETRY_BACKOFF_S="0.2", XPVAE_DEVICE="cpu", OMP_NUM_THREADS="1",
                        XPVAE_TORCH_THREADS="1", PYTHONUNBUFFERED="1")
        self.home = home
        self.workers: list[subprocess.Popen] = []

    @property
    def settings(self):
        """The settings the workers read from ``env`` (as it is now: a test may change it before a start)."""
        from shared.settings import Settings
        return Settings.from_env(self.env)

    def start_worker(self, queue: str, concurrency: int = 1, pool: str = "solo") -> subprocess.Popen:
        from xpvae.stack import worker_command
        log = open(self.home / f"worker-{queue}-{len(self.workers)}.log", "ab")
        cmd = worker_command(queue, concurrency, ["-P", pool, "-n", f"{queue}{len(self.workers)}@%h"])
        proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "xpvae", *args], env=self.env, cwd=REPO,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"xpvae {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("worker-*.log")))

    def stop(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                self.kill(p, signal.SIGTERM)


def wait_for(predicate, timeout: float = 120, interval: float = 0.3, what: str = "condition", stack=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{stack.logs()}" if stack else ""))
