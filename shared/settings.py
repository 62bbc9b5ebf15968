"""One settings object, read from the environment in one place, with the embedded defaults.

| variable             | default                               | meaning                                        |
|----------------------|---------------------------------------|------------------------------------------------|
| XPVAE_HOME           | ./var                                 | artifacts: models, checkpoints, figures, logs  |
| XPVAE_DATABASE_URL   | sqlite:///$XPVAE_HOME/xpvae.sqlite    | SQLAlchemy URL (postgresql+psycopg2://… too)   |
| XPVAE_BROKER_URL     | unset: jobs run in-process            | e.g. amqp://guest:guest@127.0.0.1:5672//       |
| XPVAE_DEVICE         | auto                                  | auto, cpu or cuda (cuda:N)                     |
| XPVAE_SHARED         | the repository's reference/ folder    | reference material (real files, weights)       |
| XPVAE_TORCH_THREADS  | unset: torch's default (every core)   | CPU threads per worker process for torch       |
| XPVAE_RETRY_BACKOFF_S| 2                                     | first retry delay of a failed job (doubles)    |
| XPVAE_READ_STREAMS   | 2                                     | parallel PostgreSQL streams for large reads    |
| XPVAE_GAIA_TAP_URL   | https://gea.esac.esa.int/             | Gaia archive for `xpvae fetch` (TAP, DataLink) |
| XPVAE_DEBUG          | unset                                 | 1: the CLI shows tracebacks of unexpected errors |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# The vendored reference material (real files, published weights); XPVAE_SHARED may point at a copy laid out alike.
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"

MAX_READ_STREAMS = 8      # each stream holds a pooled connection (db/engine.py: 5 + 5 overflow), plus one counting


class SettingsError(ValueError):
    """An XPVAE_* variable with a value it cannot take (the CLI reports it in one line, exit code 2)."""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str | None
    device: str
    shared_dir: Path
    torch_threads: int | None = None
    retry_backoff_s: float = 2.0
    read_streams: int = 2
    gaia_tap_url: str = "https://gea.esac.esa.int/"
    debug: bool = False

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process (no broker configured)."""
        return not self.broker_url

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("XPVAE_HOME") or "var").expanduser().resolve()
        database_url = env.get("XPVAE_DATABASE_URL") or f"sqlite:///{home / 'xpvae.sqlite'}"
        device = (env.get("XPVAE_DEVICE") or "auto").strip().lower()
        if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
            raise SettingsError(f"XPVAE_DEVICE must be auto, cpu, cuda or cuda:N, not {device!r}")
        shared_dir = Path(env.get("XPVAE_SHARED") or REFERENCE_DIR).expanduser().resolve()
        threads = (env.get("XPVAE_TORCH_THREADS") or "").strip()
        if threads and (not threads.isdigit() or int(threads) < 1):
            raise SettingsError(f"XPVAE_TORCH_THREADS must be an integer >= 1, not {threads!r}")
        try:
            backoff = float(env.get("XPVAE_RETRY_BACKOFF_S") or 2.0)
        except ValueError:
            backoff = float("nan")
        if not 0 <= backoff < float("inf"):
            raise SettingsError(f"XPVAE_RETRY_BACKOFF_S must be a number of seconds >= 0, not "
                                f"{env.get('XPVAE_RETRY_BACKOFF_S')!r}")
        streams = (env.get("XPVAE_READ_STREAMS") or "2").strip()
        if not streams.isdigit() or not 1 <= int(streams) <= MAX_READ_STREAMS:
            raise SettingsError(f"XPVAE_READ_STREAMS must be an integer from 1 to {MAX_READ_STREAMS}, not {streams!r}")
        return cls(home=home, database_url=database_url, broker_url=env.get("XPVAE_BROKER_URL") or None,
                   device=device, shared_dir=shared_dir, torch_threads=int(threads) if threads else None,
                   retry_backoff_s=backoff, read_streams=int(streams),
                   gaia_tap_url=(env.get("XPVAE_GAIA_TAP_URL") or cls.gaia_tap_url).strip(),
                   debug=(env.get("XPVAE_DEBUG") or "").strip() not in ("", "0"))


def get_settings() -> Settings:
    """The settings of the environment as it is now (not cached, so nothing goes stale). Entry points (the
    CLI, a worker) read them once and pass them on: jobs get them as ``ctx.settings``."""
    return Settings.from_env()
