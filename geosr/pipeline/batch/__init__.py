"""``geosr batch``: many upscale jobs on a Dask cluster, resumable, with a manifest of results.

Three steps, each usable alone:

- :func:`plan_batch` reads a manifest and checks every job before anything runs, and decides what each
  will do: ``run``, ``skip`` (up to date, per the record beside its output) or ``fail``.
- :func:`run_batch` runs the ``run`` jobs on a Dask cluster (a local one sized to the machine by default),
  one task per job, or per band of window rows when a job is split; results stream into a JSON-lines
  results manifest.
- :func:`batch` does both: the Python form of the command.

The modules, one concern each: ``manifest`` (reading the jobs), ``results`` (what a batch plans and
returns), ``plan`` (checks and skip decisions), ``records`` (the ``<out>.geosr.json`` beside each output),
``tasks`` (what runs in the workers), ``run`` (the client loop and the results manifest), ``cluster``
(local clusters pinned to GPUs, or a scheduler). Importing this package loads neither torch nor dask.
"""

from geosr.pipeline.batch.cluster import gpu_ids, local_cluster, pinned_cluster, worker_envs
from geosr.pipeline.batch.manifest import JobSpec, Manifest, ManifestError, Problem, read_manifest
from geosr.pipeline.batch.plan import plan_batch, plan_count, split_rows
from geosr.pipeline.batch.records import RECORD_SUFFIX, output_matches, read_record, record_path
from geosr.pipeline.batch.results import BatchPlan, BatchProgress, BatchResult, JobResult, PlannedJob, TaskError
from geosr.pipeline.batch.run import RunSettings, batch, run_batch
from geosr.pipeline.batch.tasks import run_finish_task, run_job_task, run_part_task, warm_worker, worker_model

__all__ = [
    "RECORD_SUFFIX",
    "BatchPlan", "BatchProgress", "BatchResult", "JobResult", "JobSpec", "Manifest", "ManifestError", "PlannedJob",
    "Problem", "RunSettings", "TaskError",
    "batch", "gpu_ids", "local_cluster", "output_matches", "pinned_cluster", "plan_batch", "plan_count",
    "read_manifest", "read_record", "record_path", "run_batch", "run_finish_task", "run_job_task", "run_part_task",
    "split_rows", "warm_worker", "worker_envs", "worker_model",
]
