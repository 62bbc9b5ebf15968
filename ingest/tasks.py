"""The ingest service's job kinds, registered with the job runner (jobqueue/registry.py). An ingest of XP or
photometry files fans out into shards of files; a shard whose files fail fails alone, and the job ends partial."""
from ingest.service import run_ingest_job, run_ingest_shard, summarise_ingest_job
from jobqueue.registry import register

register("ingest", "ingest", run_ingest_job, shard_handler=run_ingest_shard, summarise=summarise_ingest_job,
         shards_fail_alone=True)
