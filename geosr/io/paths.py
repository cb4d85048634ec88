"""What a path names: a local file, or something GDAL opens as it is (no rasterio here: the batch manifest
reader uses it without loading the GIS stack)."""

from __future__ import annotations

import re

# URLs (https://, s3://, gs://, zip+https://, ...; rasterio maps them onto GDAL's virtual file systems) and GDAL
# paths (/vsizip/, /vsicurl/, ...): opened by GDAL as they are, never checked on the local disk
REMOTE = re.compile(r"^(/vsi[a-z0-9_]+/|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)


# GDAL configuration while a remote file is opened: no listing of a URL's "folder" (GDAL would look for sidecars
# there). Only while opening: set for the process it would also hide local files' .aux.xml, .ovr and .msk.
OPEN_REMOTE_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


# What is read over a network (GDAL's network file systems, URLs), as opposed to GDAL's local virtual paths
# (/vsizip/, /vsigzip/, /vsimem/, file://)
NETWORK = re.compile(r"^(/vsi(curl|s3|gs|az|adls|oss|swift|hdfs|webhdfs)[a-z_]*/|(https?|ftp|s3|gs|az|oss)://|"
                     r"[a-z0-9]+\+(https?|s3|gs|az)://)", re.IGNORECASE)


def over_network(path: str) -> bool:
    """Whether ``path`` is read over a network (a URL, /vsicurl/, /vsis3/, ...), not from a local file."""
    return bool(NETWORK.match(path))


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL or a GDAL virtual path rather than a local file."""
    return bool(REMOTE.match(path))
