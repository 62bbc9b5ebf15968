"""One settings object, read from the environment in one place, with the embedded defaults.

| variable             | default                               | meaning                                        |
|----------------------|---------------------------------------|------------------------------------------------|
| XPVAE_HOME           | ./var                                 | artifacts: models, checkpoints, figures, logs  |
| XPVAE_DATABASE_URL   | sqlite:///$XPVAE_HOME/xpvae.sqlite    | SQLAlchemy URL (postgresql+psycopg2://… too)   |
| XPVAE_BROKER_URL     | unset: jobs run in-process            | e.g. amqp://guest:guest@127.0.0.1:5672//       |
| XPVAE_DEVICE         | auto                                  | auto, cpu or cuda (cuda:N)                     |
| XPVAE_SHARED         | ../shared                             | reference material (real files, weights)       |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str | None
    device: str
    shared_dir: Path

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
            raise ValueError(f"XPVAE_DEVICE must be auto, cpu, cuda or cuda:N, not {device!r}")
        shared_dir = Path(env.get("XPVAE_SHARED") or "../shared").expanduser().resolve()
        return cls(home=home, database_url=database_url, broker_url=env.get("XPVAE_BROKER_URL") or None,
                   device=device, shared_dir=shared_dir)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings.from_env()
