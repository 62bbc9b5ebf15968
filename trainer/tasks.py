"""The trainer service's job kinds, registered with the job runner (jobqueue/registry.py)."""
from jobqueue.registry import register
from trainer.service import run_baseline_job, run_train_job

register("train", "trainer", run_train_job)
register("train_baseline", "trainer", run_baseline_job)
