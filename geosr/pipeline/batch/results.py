"""What a batch plans and returns: planned jobs, the results manifest's lines, progress, a worker's error."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field

from geosr.pipeline.batch.manifest import JobSpec, Problem

EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class PlannedJob:
    """One checked job and what the batch will do with it."""

    spec: JobSpec
    action: str  # "run", "skip" or "fail"
    reason: str | None = None
    windows: int = 0
    window_rows: int = 0
    parts: tuple[tuple[int, int], ...] = ()  # ranges of window rows, one task each
    replace: bool = False  # the output exists and is replaced (--overwrite / --force)
    # the files at the output's paths (it and its sidecars) the plan found and lets the job replace: (path, size,
    # modification time in ns) each
    replaces: tuple[tuple[str, int, int], ...] = ()
    memory_mb: float = 0.0
    error_type: str | None = None  # why a "fail" job fails: OutputExistsError, or NetworkError (worth a new run)
    warnings: tuple[str, ...] = ()  # what its plan warned of (bands, settings it ignores): a dry run tells them


@dataclass
class BatchPlan:
    """A checked manifest: every job planned; invalid rows kept only when asked to skip them."""

    source: str
    jobs: list[PlannedJob]
    invalid: list[Problem] = field(default_factory=list)
    results: str | None = None  # default results manifest path
    seconds: float = 0.0
    make_dirs: bool = False  # missing output folders are made when their jobs run

    @property
    def to_run(self) -> list[PlannedJob]:
        return [j for j in self.jobs if j.action == "run"]

    @property
    def tasks(self) -> int:
        return sum(len(j.parts) for j in self.to_run)


@dataclass(frozen=True)
class JobResult:
    """One line of the results manifest."""

    id: str
    status: str  # "ok", "skipped", "failed", "cancelled"; "planned" in a dry run
    output: str | None
    lr: str | None = None
    where: str | None = None
    stage: str | None = None  # where a failure happened: "check" (before running) or "run"
    error: str | None = None
    error_type: str | None = None
    seconds: float | None = None  # compute time of its tasks
    started: str | None = None
    finished: str | None = None
    windows: int | None = None
    window_rows: int | None = None
    resumed_rows: int | None = None
    parts: int | None = None
    worker: str | None = None
    warnings: list[str] | None = None  # what the job's run warned of (upscale's warnings), once each

    def to_dict(self) -> dict:
        """The line, without the ``user:password@`` of any URL in it (the LR, an error or a warning naming it)."""
        from geosr.io.paths import credentials_hidden

        line = asdict(self)
        for key in ("lr", "error"):
            if line[key]:
                line[key] = credentials_hidden(line[key])
        if line["warnings"]:  # (a warning may name an input: a change mask's nodata; found in review)
            line["warnings"] = [credentials_hidden(w) for w in line["warnings"]]
        return line


@dataclass
class BatchResult:
    """What a batch did. ``exit_code`` is the command's: 0 when no job failed, else 1."""

    source: str
    jobs: list[JobResult]
    results: str | None
    seconds: float
    workers: int = 0
    scheduler: str | None = None
    dashboard: str | None = None
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def failed(self) -> list[JobResult]:
        return [j for j in self.jobs if j.status in ("failed", "cancelled")]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def to_dict(self) -> dict:
        counts = {s: self.count(s) for s in ("ok", "skipped", "failed", "cancelled", "planned")}
        return dict(
            source=self.source, results=self.results, seconds=self.seconds, workers=self.workers,
            scheduler=self.scheduler, dashboard=self.dashboard, dry_run=self.dry_run, counts=counts,
            exit_code=self.exit_code, jobs=[j.to_dict() for j in self.jobs],
        )


@dataclass(frozen=True)
class BatchProgress:
    """Overall progress, as handed to a ``progress`` callback (about five times a second)."""

    jobs_done: int
    jobs_total: int
    windows_done: int
    windows_total: int
    failed: int
    running: int


class TaskError(RuntimeError):
    """An exception raised in a worker, carried back as its type's name and a message that includes its
    cause (GDAL puts the useful part, such as which block of which file, in the cause)."""

    def __init__(self, kind: str, message: str, sentence: bool = False) -> None:
        super().__init__(kind, message)
        self.kind, self.message, self.sentence = kind, message, sentence

    def __str__(self) -> str:  # geosr's own errors are a sentence already (their type goes in error_type)
        return self.message if self.sentence else f"{self.kind}: {self.message}"

    @classmethod
    def from_exception(cls, exc: BaseException) -> "TaskError":
        from geosr.errors import GeoSRError

        message = str(exc)
        if isinstance(exc, GeoSRError):
            return cls(type(exc).__name__, message, sentence=True)
        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if cause is not None and str(cause) and str(cause) not in message:
            message = f"{message} ({cause})" if message else str(cause)
        return cls(type(exc).__name__, message)


# ---- results of planned jobs -----------------------------------------------------------------------------------
def job_result(pj: PlannedJob, status: str, **kw) -> JobResult:
    """The results line of ``pj`` with ``status`` (and ``kw``: its error, times, worker)."""
    s = pj.spec
    known = bool(pj.parts)  # else its check never got as far as a plan (its inputs did not answer): unknown
    return JobResult(
        id=s.id, status=status, output=s.out, lr=s.lr, where=s.where, windows=pj.windows if known else None,
        window_rows=pj.window_rows if known else None, parts=len(pj.parts) if known else None, **kw,
    )


def planned_result(pj: PlannedJob) -> JobResult:
    """What a dry run reports for ``pj``."""
    if pj.action == "run":
        return job_result(pj, "planned", error=None, warnings=list(pj.warnings) or None)
    if pj.action == "skip":
        return job_result(pj, "skipped")
    return job_result(pj, "failed", stage="check", error=pj.reason, error_type=pj.error_type or "OutputExistsError")


def invalid_results(plan: BatchPlan) -> list[JobResult]:
    """One failed line per invalid manifest row of ``plan``, its problems' reasons joined (a row with two was two
    lines of one id, and two failed jobs in the counts; found in review)."""
    rows: dict[str, list] = {}
    for p in plan.invalid:
        rows.setdefault(p.where, []).append(p)
    out = []
    for i, problems in enumerate(rows.values()):
        first = problems[0]
        out.append(JobResult(
            id=next((p.job_id for p in problems if p.job_id), None) or f"invalid-{i + 1}", status="failed",
            output=next((p.output for p in problems if p.output), None),
            lr=next((p.lr for p in problems if p.lr), None), where=first.where, stage="check",
            error="; ".join(dict.fromkeys(p.message for p in problems)), error_type="ManifestError"))
    return out


def utc_now() -> str:
    """The time now (UTC, ISO 8601 to the millisecond), as results and records write it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
