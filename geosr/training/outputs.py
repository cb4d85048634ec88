"""The output folder of ``geosr train`` and ``geosr evaluate``: never written into while it holds anything,
unless asked to replace it, and then only when everything in it is that command's own output."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from geosr.errors import OutputExistsError, OutputLocationError


@dataclass(frozen=True)
class OutputFolder:
    """``path``, written by ``command``, whose own files match ``owned`` (glob patterns)."""

    path: Path
    command: str
    owned: tuple[str, ...]

    def _entries(self) -> list[Path]:
        if self.path.exists() and not self.path.is_dir():
            raise OutputLocationError(f"{self.path}: is a file; the output of {self.command} is a folder")
        return sorted(self.path.iterdir()) if self.path.is_dir() else []

    def check(self, *, overwrite: bool) -> None:
        """Refuse a folder that holds anything (without ``overwrite``) or anything but this command's own files."""
        entries = self._entries()
        if entries and not overwrite:
            raise OutputExistsError(f"{self.path}: the output folder is not empty; give `overwrite` to replace the "
                                    f"{self.command} output there, or choose another `out`")
        foreign = [e for e in entries if not (e.is_file() and any(fnmatch(e.name, p) for p in self.owned))]
        if foreign:
            raise OutputExistsError(f"{self.path}: holds {foreign[0].name}, which {self.command} does not write; "
                                    "`overwrite` replaces only an earlier output, so choose another `out`")

    def prepare(self, *, overwrite: bool) -> Path:
        """Check again, remove the earlier output (with ``overwrite``), and create the folder."""
        self.check(overwrite=overwrite)
        for entry in self._entries():
            entry.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path


__all__ = ["OutputFolder"]
