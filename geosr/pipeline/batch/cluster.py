"""Where a batch runs: the caller's Dask client, a scheduler's cluster, or a local cluster on this machine.

A local cluster has one worker process per GPU, each pinned to it (``CUDA_VISIBLE_DEVICES`` set before the
process starts), or ``workers`` round robin over them; without GPUs, one single-threaded worker per core,
no more than there are tasks or than memory allows.
"""

from __future__ import annotations

import contextlib
import logging
import os

from geosr.pipeline.batch.results import BatchPlan
from geosr.pipeline.batch.tasks import warm_worker

SCHEDULER_TIMEOUT_S = 30  # how long a --scheduler address may take to answer


@contextlib.contextmanager
def connect(client, scheduler, workers, device, dashboard, plan: BatchPlan):
    """Yield (client, device for the tasks): the caller's client, one to ``scheduler``, or a local cluster."""
    from distributed import Client

    _drop_cancel_race()
    if client is not None:
        yield client, device
        return
    if scheduler is not None:
        with _scheduler_client(scheduler) as cl:
            yield cl, device
        return
    with _sigint_ignored():
        cluster, task_device = local_cluster(workers=workers, device=device, dashboard=dashboard, tasks=plan.tasks,
                                             memory_mb=max((j.memory_mb for j in plan.to_run), default=0))
    with cluster, Client(cluster) as cl, _quiet_when_stopped():
        with _sigint_ignored():
            cl.wait_for_workers(len(cluster.worker_spec), timeout=120)
        yield cl, task_device


def _scheduler_client(scheduler: str):
    """A Client of the scheduler at ``scheduler``, or a NetworkError (exit 1) in one sentence within about
    SCHEDULER_TIMEOUT_S. Asked in a thread with its own deadline: Dask's handshake waited for ever on a peer that
    accepts and says nothing (a dashboard's HTTP port, 8787 for 8786), and read another service's greeting (an SSH
    server's) as a frame of exabytes, an internal MemoryError (found in review)."""
    import threading

    from distributed import Client

    from geosr.errors import NetworkError

    got: dict = {}
    deciding = threading.Lock()

    def ask() -> None:
        try:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except BaseException as exc:  # noqa: BLE001 - whatever the peer's bytes made of Dask's reading
            got["error"] = exc
            return
        with deciding:
            if got.get("given up"):  # answered after the batch stopped waiting: no client left open for ever
                client.close()
            else:
                got["client"] = client

    # (a thread waiting on a peer that never answers stays until the peer closes the connection: Dask's handshake
    # cannot be cancelled from here; in a CLI run the process ends)
    asking = threading.Thread(target=ask, name="geosr-scheduler-connect", daemon=True)
    asking.start()
    asking.join(SCHEDULER_TIMEOUT_S + 1)
    with deciding:
        got["given up"] = True
    exc = got.get("error")
    if "client" in got:
        return got["client"]
    if asking.is_alive():
        why = f"it accepted the connection, but nothing answered as a Dask scheduler within {SCHEDULER_TIMEOUT_S} s"
    elif isinstance(exc, OSError):
        why = str(exc)
    else:
        why = f"what answered is no Dask scheduler: {exc.__class__.__name__ if exc else 'no answer'}"
    raise NetworkError(f"scheduler {scheduler}: no Dask scheduler answers there ({why}; a scheduler listens on "
                       "8786 unless told otherwise, its dashboard on 8787)", param="scheduler") from exc


@contextlib.contextmanager
def _sigint_ignored():
    """Start local workers with SIGINT ignored. A terminal's Ctrl-C reaches the whole process group: each worker
    printed Dask's KeyboardInterrupt traceback (or died mid-import) while the batch, which handles the signal, closed
    them anyway. An ignored signal stays ignored through fork and exec, whichever of Dask's threads spawns the
    process (a blocked one would depend on which thread that is); a worker its nanny restarts later ignores it by
    :mod:`~geosr.pipeline.batch.worker_preload`. The price: a Ctrl-C in the seconds the workers take to start is
    lost (press it again)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


class _CancelRace(logging.Filter):
    """Drops the traceback of distributed's own race on Ctrl-C (2026.8): a wait interrupted before its coroutine
    started schedules ``sync.<locals>.cancel``, which reads a variable not yet set, and Tornado logs the
    ``NameError`` around geosr's "interrupted" line. Nothing is lost: the coroutine it would cancel ends with the
    client the batch closes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NameError) and "sync.<locals>.cancel" in record.getMessage())


def _drop_cancel_race() -> None:
    """Install :class:`_CancelRace` on Tornado's callback log, once per process (it may fire after the batch has
    returned: the callback runs on the client's event loop thread)."""
    log = logging.getLogger("tornado.application")
    if not any(isinstance(f, _CancelRace) for f in log.filters):
        log.addFilter(_CancelRace())


@contextlib.contextmanager
def _quiet_when_stopped():
    """When the batch stops on an interrupt or an error, its local cluster is closed with work in flight, and Dask's
    scheduler logs each broken connection as an error (``broadcast ... failed: CommClosedError``): silenced then."""
    try:
        yield
    except BaseException:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        raise


WORKERS_WAIT_S = 60.0  # how long a batch waits for a first worker to join a cluster that has none


def warm(client, scheduler: str | None, wait_s: float | None = None) -> None:
    """Run :func:`~geosr.pipeline.batch.tasks.warm_worker` on every worker: geosr must import there. A cluster
    without workers is waited on ``wait_s`` seconds for one, then refused (it showed 0 of N jobs done for ever)."""
    from geosr.errors import GeoSRError, NetworkError

    wait_s = WORKERS_WAIT_S if wait_s is None else wait_s
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            where = f"at {scheduler} " if scheduler else ""
            raise NetworkError(f"the Dask cluster {where}has no workers (none joined in {wait_s:g} s); start workers "
                               f"on it ({'dask worker ' + scheduler if scheduler else 'dask worker ADDRESS'}) and run "
                               "the batch again") from None
    try:
        client.run(warm_worker)
    except ImportError as exc:
        where = f"at {scheduler}" if scheduler else ""
        raise GeoSRError(f"the Dask workers {where} cannot import geosr ({exc}); install geosr on them") from exc


def cluster_info(client, local: bool, dashboard: str | None = ":8787") -> dict:
    """Workers, scheduler address and dashboard link of the cluster behind ``client`` (None for a local cluster
    whose ``dashboard`` was turned off: its scheduler still answers HTTP there, without a dashboard)."""
    try:
        n = len(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001
        n = 0
    link = None
    if not (local and dashboard_off(dashboard)):
        with contextlib.suppress(Exception):
            link = client.dashboard_link
    if link and not (_has_bokeh() if local else _scheduler_has_bokeh(client)):  # Dask's dashboard page needs it
        link += " (install bokeh to see it)" if local else " (install bokeh on its scheduler to see it)"
    return dict(workers=n, scheduler=client.scheduler.address, dashboard=link)


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _scheduler_has_bokeh(client) -> bool:
    """Whether a scheduler given by address can serve its dashboard page: one without bokeh answers 404 there (the
    bare link was dead; found in review). True when it cannot be asked."""
    try:
        return bool(client.run_on_scheduler(_has_bokeh))
    except Exception:  # noqa: BLE001
        return True


# ---- a local cluster -------------------------------------------------------------------------------------------
def local_cluster(*, workers: int | None = None, device: str = "auto", dashboard: str | None = ":8787",
                  tasks: int | None = None, memory_mb: float = 0.0):
    """A LocalCluster of worker processes on this machine: one per GPU, each pinned to it (or ``workers``
    round robin over them); without GPUs one single-threaded worker per core, no more than there are tasks
    or than memory allows. Returns (cluster, the device string the tasks use)."""
    from distributed import LocalCluster

    cpus = os.cpu_count() or 1
    gpus = gpu_ids(device)
    common = dict(threads_per_worker=1, processes=True, host="127.0.0.1", silence_logs=logging.ERROR,
                  preload=_worker_preloads(), **dashboard_settings(dashboard))
    if gpus:
        return pinned_cluster(gpus, workers or len(gpus), dashboard=dashboard), "cuda"
    # (more workers than tasks would idle)
    n = min(workers, tasks or workers) if workers else max(1, min(cpus, tasks or cpus, _memory_cap(memory_mb)))
    with _cluster_settings():
        cluster = LocalCluster(n_workers=n, **common)
    return cluster, "cpu" if (device or "auto").lower() in ("auto", "cpu") else device


def dashboard_off(dashboard: str | None) -> bool:
    """Whether a local cluster's dashboard address asks for none (None, ``none``, ``off`` or empty)."""
    return dashboard is None or str(dashboard).strip().lower() in ("none", "off", "")


def check_scheduler(scheduler: object) -> None:
    """Refuse, before anything runs, a scheduler address Dask cannot read (``not an address``, ``http://...``:
    an internal error once the jobs had been checked, and "planned" by a dry run; found in review). Whether a
    scheduler answers there is the run's to find."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    from geosr.errors import OptionError

    shown = f"scheduler {scheduler!r}"
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise OptionError(f"{shown}: give the address of a Dask scheduler, as tcp://HOST:PORT", param="scheduler")
    scheme = parse_address(scheduler.strip(), strict=False)[0]
    port = None
    try:
        if scheme != "inproc":  # (in-process addresses have no host and port)
            port = get_address_host_port(scheduler.strip())[1]
    except ValueError as exc:
        said = str(exc)
        problem = f"Dask knows no {scheme}:// addresses" if "unknown address scheme" in said else "no port" if \
            "missing port" in said else f"Dask cannot read it: {said}"
        raise OptionError(f"{shown}: not a Dask scheduler address ({problem}); give tcp://HOST:PORT",
                          param="scheduler") from None
    if port is not None and not 0 < int(port) <= 65535:  # (one beyond waited 30 s for an answer; found in review)
        raise OptionError(f"{shown}: port {port} is out of range (1 to 65535)", param="scheduler")


def check_dashboard(dashboard: str | None) -> None:
    """Refuse, before anything runs, a local dashboard address Dask cannot serve (it failed once the jobs had been
    checked, an internal error): not ``[host]:port`` or ``port``, a port out of range, or a host that is not this
    machine's. A port in use is fine: Dask takes another and the link printed says which."""
    import socket

    from geosr.errors import OptionError

    if dashboard_off(dashboard):
        return
    shown = f"dashboard {dashboard!r}"
    # read as distributed.utils.clean_dashboard_address reads it (PORT, :PORT, HOST:PORT, HOST; several separated by
    # commas), without importing distributed for a batch that may not start a cluster
    for part in str(dashboard).split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep:
            host, port = ("", port) if port.isdigit() else (port, "0")
        if not port.isdigit():
            raise OptionError(f"{shown}: not an address; give :PORT, HOST:PORT or none", param="dashboard")
        if not 0 <= int(port) <= 65535:
            raise OptionError(f"{shown}: port {port} is out of range (0 to 65535)", param="dashboard")
        host = host or "0.0.0.0"
        try:  # can this machine listen there? (port 0: whether the port is free does not matter)
            family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
        except OSError as exc:
            raise OptionError(f"{shown}: this machine cannot serve a dashboard on {host} ({exc.strerror or exc})",
                              param="dashboard") from None


def dashboard_settings(dashboard: str | None) -> dict:
    """LocalCluster's keywords for ``dashboard``. Dask's scheduler serves its HTTP routes (health, metrics) even
    without a dashboard, on the dashboard's address (8787 when given none): with the dashboard off they go to a free
    port, so that "off" takes no well-known port either."""
    if dashboard_off(dashboard):
        return {"dashboard_address": ":0", "scheduler_kwargs": {"dashboard": False}}
    return {"dashboard_address": dashboard}


def gpu_ids(device: str) -> list[str]:
    """The CUDA devices a local cluster puts one worker on (as CUDA_VISIBLE_DEVICES entries)."""
    import torch

    from geosr.models.device import resolve_device

    dev = resolve_device(device)  # the one resolver: checks the name, and that CUDA is there when asked for
    if dev.type != "cuda":
        return []
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    n = torch.cuda.device_count()
    ids = visible[:n] if visible else [str(i) for i in range(n)]
    if dev.index is None:
        return ids
    if dev.index >= len(ids):
        from geosr.errors import OptionError

        raise OptionError(f"device {device}: this machine has {len(ids)} CUDA device(s)", param="device")
    return [ids[dev.index]]


def worker_envs(gpus: list[str], n_workers: int, cpus: int) -> list[dict[str, str]]:
    """Environment of each local GPU worker: its device (round robin) and a share of the CPU threads."""
    threads = str(max(1, cpus // max(1, n_workers)))
    return [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)], "OMP_NUM_THREADS": threads} for i in range(n_workers)]


def pinned_cluster(gpus: list[str], n_workers: int, *, dashboard: str | None = ":8787"):
    """A LocalCluster of ``n_workers`` single-threaded processes, each seeing one of ``gpus`` (round robin)
    as its only CUDA device (``CUDA_VISIBLE_DEVICES``, set before the worker process starts)."""
    from distributed import LocalCluster

    with _cluster_settings():
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
                               silence_logs=logging.ERROR, preload=_worker_preloads(),
                               **dashboard_settings(dashboard))
    template = cluster.new_spec
    for i, env in enumerate(worker_envs(gpus, n_workers, os.cpu_count() or 1)):
        cluster.worker_spec[f"gpu-{i}"] = {"cls": template["cls"], "options": {**template["options"], "env": env}}
    cluster.scale(n_workers)
    return cluster


def _worker_preloads() -> list[str]:
    """Dask's configured worker preloads, and geosr's (:mod:`~geosr.pipeline.batch.worker_preload`)."""
    import dask

    configured = dask.config.get("distributed.worker.preload", default=None) or []
    return [*([configured] if isinstance(configured, str) else configured), "geosr.pipeline.batch.worker_preload"]


@contextlib.contextmanager
def _cluster_settings():
    """Settings while a local cluster starts. Dask warns when the dashboard port is taken and uses another
    (the link printed says which): silenced. Dask's workers trim malloc at 64 kB (MALLOC_TRIM_THRESHOLD_),
    which makes geosr's large temporary arrays about 18 % slower: glibc's default is kept unless the
    environment sets it."""
    import warnings

    import dask

    keep_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with warnings.catch_warnings(), dask.config.set(keep_trim):
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        yield


def _memory_cap(job_mb: float) -> int:
    """How many CPU workers fit in the available memory (about 1 GB each for torch and GDAL, plus a job)."""
    try:
        import psutil

        avail = psutil.virtual_memory().available / 2**20
    except Exception:  # noqa: BLE001
        return 1 << 30
    return max(1, int(avail // (1024 + job_mb)))
