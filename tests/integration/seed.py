"""Seed the test database with a small simulated survey and, on request, a trained model — in this process,
through the same plain functions the workers call."""
from __future__ import annotations

import numpy as np

from db import job_store as jobs_db
from db.job_status import JobStatus
from db.labels import write_apogee
from db.spectra import write_photometry, write_xp_batch
from jobqueue import registry, runner
from simulator.survey import generate


def seed_survey(engine, n_stars: int = 2000, seed: int = 3, alpha_signal: float = 1.0) -> np.ndarray:
    batch, truth, labels, phot = generate(n_stars, seed, alpha_signal=alpha_signal, label_fraction=0.5)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "seed")
        write_photometry(conn, phot)
        write_apogee(conn, labels, "seed")
    return np.asarray(batch["source_id"])


def run_here(engine, settings, kind: str, params: dict, max_attempts: int = 3) -> dict:
    """Create a job and execute it in this process (whatever the broker setting); return the finished row."""
    job_id = jobs_db.create_job(engine, kind, registry.KINDS[kind].queue, params, max_attempts=max_attempts)
    status = runner.execute(job_id, settings=settings, engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert status == JobStatus.SUCCEEDED, job["error"]
    return job


def train_small_model(engine, settings, epochs: int = 3, name: str = "seed-svae") -> int:
    """Train in this process with ``settings`` (the stack's: its workers find the model file under its home)."""
    job = run_here(engine, settings, "train", {"name": name, "selection": {},
                                     "train": {"epochs": epochs, "batch_size": 256, "checkpoint_every": 0}})
    return int(job["result"]["model_id"])
