"""The analysis service's job kinds, registered with the job runner (jobqueue/registry.py)."""
from analysis.service import run_alpha_catalogue_job, run_alpha_job, run_reconstruction_job
from jobqueue.registry import register

register("analyze_alpha", "analysis", run_alpha_job)
register("analyze_alpha_catalogue", "analysis", run_alpha_catalogue_job)
register("analyze_reconstruction", "analysis", run_reconstruction_job)
