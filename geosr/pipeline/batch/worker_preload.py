"""Preloaded into each worker process of a local cluster (Dask's ``preload``; distributed calls ``dask_setup``)."""

from __future__ import annotations

import logging
import signal
import threading


def dask_setup(worker: object) -> None:
    """Leave Ctrl-C to the batch, also in a worker its nanny restarted (the first ones start with SIGINT ignored:
    :func:`geosr.pipeline.batch.cluster.connect`), and leave the report of a failed task to geosr, which retries
    it and names its error in the results (Dask logs each attempt as an error with its whole traceback)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _NoComputeFailed) for f in worker_log.filters):
        worker_log.addFilter(_NoComputeFailed())


class _NoComputeFailed(logging.Filter):
    """Drops distributed's "Compute Failed" records (a task that raised)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Compute Failed")
