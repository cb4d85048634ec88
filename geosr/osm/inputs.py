"""The files a user names for a map (an OSM extract, a class table): their formats, checked before any work.

Every check fails with one sentence naming the file (an :class:`~geosr.errors.InputError`, exit code 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from geosr.errors import InputError, InputNotFoundError, VectorFileError
from geosr.io.paths import refuse_undecodable

XML_SUFFIXES = (".osm", ".osm.bz2", ".osm.gz", ".osm.xml")
PBF_SUFFIXES = (".pbf",)
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb")
SUPPORTED = ".osm, .osm.bz2, .osm.gz, .pbf, .gpkg, .geojson, .shp, .fgb"


def existing_file(
    path: str | os.PathLike[str], what: str, folder_error: type[InputError], *, missing: str = "file"
) -> Path:
    """``path`` when it is an existing file; else "no such ``missing``" or "is a folder, not ``what``"."""
    refuse_undecodable(os.fspath(path))
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such {missing}")
    if p.is_dir():
        raise folder_error(f"{p}: is a folder, not {what}")
    return p


def file_kind(path: str | os.PathLike[str]) -> str:
    """"xml", "pbf" or "vector" from the file name; VectorFileError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(XML_SUFFIXES):
        return "xml"
    if name.endswith(PBF_SUFFIXES):
        return "pbf"
    if name.endswith(VECTOR_SUFFIXES):
        return "vector"
    raise VectorFileError(f"{path}: unsupported format for an OSM or vector file (use {SUPPORTED})")


def check_osm_file(path: str | os.PathLike[str]) -> Path:
    """Fail early, with one sentence, when ``path`` is missing, a folder or of an unknown format."""
    p = existing_file(path, "an OSM or vector file", VectorFileError)
    file_kind(p)
    return p
