"""The inferencer service's job kinds, registered with the job runner (jobqueue/registry.py). Inference fans
out into shards of stars: each shard is a message of its own, and the job's result is summarised from them."""
from inferencer.service import run_infer_job, run_infer_shard, summarise_infer_job
from jobqueue.registry import register

register("infer", "inferencer", run_infer_job, shard_handler=run_infer_shard, summarise=summarise_infer_job)
