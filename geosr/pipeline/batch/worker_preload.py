"""Preloaded into each worker process of a local cluster (Dask's ``preload``; distributed calls ``dask_setup``)."""

from __future__ import annotations

import signal
import threading


def dask_setup(worker: object) -> None:
    """Leave Ctrl-C to the batch, also in a worker its nanny restarted (the first ones start with SIGINT ignored:
    :func:`geosr.pipeline.batch.cluster.connect`)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
