"""OSM features online: the Overpass API through osmnx, with osmnx's response cache in geosr's cache folder.

A timeout; a ``--date`` snapshot (Overpass keeps history from 2012-09-12 06:55 UTC on); one sentence
(:class:`~geosr.errors.NetworkError`) when Overpass is unreachable. A query whose answers are all in the
cache needs no network. osmnx is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import math
import os
import re
import socket
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import unquote, urlparse

from geosr.errors import NetworkError, OptionError
from geosr.io.paths import without_credentials
from geosr.osm.classes import MapClassTable
from geosr.osm.features import OSMFeatures, empty_frame, first_line, normalise, osmnx_settings

if TYPE_CHECKING:  # pragma: no cover
    from shapely.geometry.base import BaseGeometry

DEFAULT_OVERPASS_URL = "https://overpass-api.de/api"

# Overpass keeps history ("attic" data) from the ODbL licence change on.
_EARLIEST_SNAPSHOT = dt.datetime(2012, 9, 12, 6, 55, tzinfo=dt.timezone.utc)


# The answers of an Overpass server too busy to run a query (the public one's when overloaded), which osmnx meets
# by waiting 55 s and asking again, as often as they come: a run that never ended, whatever its timeout
BUSY_STATUS = {429: "Too Many Requests", 504: "Gateway Timeout"}


class _Busy(Exception):
    """An Overpass server answered with one of BUSY_STATUS (raised by the response hook, ending osmnx's retries)."""


class _NotOverpass(Exception):
    """An answer in JSON that is no Overpass result (no list of ``elements``; raised by the response hook, so that
    osmnx neither fails on it with a KeyError nor keeps it in its cache, where every later run read it again)."""


def default_cache_folder() -> Path:
    """geosr's cache folder for osmnx responses: $GEOSR_CACHE_DIR/osmnx, else the user cache folder."""
    root = os.environ.get("GEOSR_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geosr")
    return Path(root) / "osmnx"


def _usable_cache(folder: Path, given: bool, writing: bool = False) -> Path:
    """``folder`` where it is a folder, or where it can be made in one this process may write in; else one sentence
    naming where it was set (a file there, or a link to nothing, was an internal error, exit 1; found in review).
    Nothing is made here. A folder that is there may be read-only unless ``writing`` (an answer is to be added):
    it may hold every answer a run needs."""
    there = folder
    while not there.exists() and not there.is_symlink() and there.parent != there:
        there = there.parent
    if there.is_symlink() and not there.exists():
        problem: str | None = f"{there} is a link to nothing"
    elif not there.is_dir():
        problem = f"{there} is not a folder"
    elif (writing or there != folder) and not os.access(there, os.W_OK | os.X_OK):
        problem = f"{there} cannot be written" + (", and this run has an answer to add or replace there"
                                                  if there == folder else "")
    else:
        return folder
    named = "`cache_folder`" if given else "$GEOSR_CACHE_DIR" if os.environ.get("GEOSR_CACHE_DIR") else \
        "$XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "the home folder"
    raise OptionError(f"{folder}: cannot hold the cache of Overpass responses ({problem}; set by {named})",
                      param="cache_folder" if given else None)


def parse_snapshot_date(value: str | dt.date | dt.datetime | None) -> str | None:
    """``--date`` as Overpass wants it ("YYYY-MM-DDTHH:MM:SSZ"), validated; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    else:
        text = str(value).strip()
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(f"date {text!r}: not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ",
                              param="date") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    if when < _EARLIEST_SNAPSHOT:
        raise OptionError(f"date {when:%Y-%m-%d}: Overpass holds history only from 2012-09-12 06:55 UTC "
                          "on (its first snapshot; give a later date)", param="date")
    if when > dt.datetime.now(dt.timezone.utc):
        raise OptionError(f"date {when:%Y-%m-%d}: is in the future", param="date")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _overpass_cache_files(ox: Any, polygon: "BaseGeometry", tags: dict) -> list[Path] | None:
    """The osmnx cache files the query for ``polygon`` and ``tags`` reads or writes (osmnx 2.x).

    osmnx keys its cache by the SHA-1 of the GET form of each Overpass request (``_overpass_request``);
    the requests are the sub-polygons of ``_make_overpass_polygon_coord_strs``. These are osmnx
    internals: if they change, this returns None and geosr just checks the network before asking.
    """
    try:
        import requests
        from osmnx import _http, _overpass

        url = ox.settings.overpass_url.rstrip("/") + "/interpreter"
        files = []
        for coord_str in _overpass._make_overpass_polygon_coord_strs(polygon):
            query = _overpass._create_overpass_features_query(coord_str, tags)
            prepared = requests.Request("GET", url, params=OrderedDict(data=query)).prepare().url
            files.append(_http._resolve_cache_filepath(str(prepared)))
        return files
    except Exception:  # noqa: BLE001 - osmnx internals moved: fall back to asking the network
        return None


def _check_reachable(url: str, timeout: float) -> None:
    """One quick TCP connection to the Overpass host; a clear NetworkError when it fails."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host or parsed.scheme not in ("http", "https"):
        raise OptionError(f"overpass_url {url!r}: not an http(s) URL", param="overpass_url")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:  # a port out of range or no number (was an internal error; found in review)
        raise OptionError(f"overpass_url {url!r}: {exc}", param="overpass_url") from None
    try:
        with socket.create_connection((host, port), timeout=max(1.0, min(timeout, 15.0))):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise NetworkError(
            f"cannot reach the Overpass API at {url} ({reason}); check the network connection, "
            "or work offline with `osm_file`"
        ) from exc


def fetch_overpass(
    polygon: "BaseGeometry",
    table: MapClassTable,
    *,
    timeout: float = 180.0,
    cache_folder: str | os.PathLike[str] | None = None,
    overpass_url: str | None = None,
    date: str | None = None,
) -> OSMFeatures:
    """Features of ``table`` inside ``polygon`` (WGS84 lon/lat) from Overpass, through osmnx and its cache.

    ``date`` (Overpass form, see :func:`parse_snapshot_date`) asks for the map as it was then.
    Raises NetworkError (one sentence) when the server cannot be reached or answers with an error.
    """
    import requests

    url = (overpass_url or DEFAULT_OVERPASS_URL).rstrip("/")
    login = urlparse(url)
    # A `user:password@` goes to requests as its auth, and the URL without it to osmnx and into every message and
    # the map's tags: osmnx takes a URL's host as what precedes its first ":", so it looked the user name up in DNS
    # (and, that failing, at Google's DNS over HTTPS), and the source tag showed the password (found in review).
    auth = (unquote(login.username), unquote(login.password or "")) if login.username is not None else None
    url = without_credentials(url)
    folder = _usable_cache(Path(cache_folder) if cache_folder is not None else default_cache_folder(),
                           given=cache_folder is not None)
    # Overpass takes whole seconds only: "[timeout:180.0]", as osmnx writes a float setting, is refused (HTTP 400)
    overpass_settings = f"[out:json][timeout:{max(1, math.ceil(timeout))}]{{maxsize}}"
    if date:
        overpass_settings += f'[date:"{date}"]'
    tags = table.query_tags()
    import osmnx

    remarks: list[str] = []  # errors Overpass reported in answers with status 200, which osmnx only logs

    def heard(response: "requests.Response", *args: Any, **kwargs: Any) -> None:
        if response.status_code in BUSY_STATUS:  # osmnx would wait 55 s and ask again, without end
            raise _Busy(f"HTTP {response.status_code} {response.reason or BUSY_STATUS[response.status_code]}")
        remark = _remark(response.content)
        if remark is not None:
            remarks.append(remark)
        elif not response.url.rstrip("/").endswith("/status"):
            odd = _not_overpass(response.content)
            if odd is not None:
                raise _NotOverpass(f"HTTP {response.status_code}, {odd}")

    kwargs = dict(osmnx.settings.requests_kwargs or {})
    kwargs["hooks"] = {"response": [*(kwargs.get("hooks") or {}).get("response", []), heard]}
    if auth is not None:
        kwargs["auth"] = auth
    with osmnx_settings(
        requests_kwargs=kwargs,
        cache_folder=str(folder),
        use_cache=True,
        requests_timeout=float(timeout),
        overpass_url=url,
        overpass_settings=overpass_settings,
        log_console=False,
        doh_url_template=None,  # a host the resolver cannot find is not asked of Google's DNS over HTTPS
    ) as ox:
        from osmnx._errors import InsufficientResponseError, ResponseStatusCodeError

        with warnings.catch_warnings(record=True) as heard_osmnx:  # (printed raw, twice, even with --quiet --json)
            warnings.simplefilter("always")
            files = _overpass_cache_files(ox, polygon, tags)
        broken = _drop_unreadable(files or [])
        if files is None or broken or not all(f.is_file() for f in files):
            _usable_cache(folder, given=cache_folder is not None, writing=True)  # (osmnx's write: PermissionError)
            _check_reachable(url, timeout)
        try:
            with warnings.catch_warnings(record=True) as more, _pause_within(timeout):
                warnings.simplefilter("always")
                frame = ox.features_from_polygon(polygon, tags)
            heard_osmnx += more
        except _Busy as exc:
            raise NetworkError(f"the Overpass API at {url} is busy ({exc}); try again later, or work offline with "
                               "`osm_file`") from exc
        except _NotOverpass as exc:
            raise NetworkError(f"the Overpass API at {url} sent an answer that is no Overpass result ({exc}); "
                               "check `overpass_url`, try again later, or work offline with `osm_file`") from exc
        except requests.exceptions.Timeout as exc:
            raise NetworkError(
                f"the Overpass API at {url} did not answer within {timeout:g} s; try again later, "
                "raise `timeout`, or work offline with `osm_file`"
            ) from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            # (reached, it began to answer: "cannot reach" sent the user to their network connection; review)
            raise NetworkError(f"the Overpass API at {url} broke off its answer ({exc.__class__.__name__}); try "
                               "again later, or work offline with `osm_file`") from exc
        except requests.exceptions.RequestException as exc:
            raise NetworkError(
                f"cannot reach the Overpass API at {url} ({exc.__class__.__name__}); check the network "
                "connection, or work offline with `osm_file`"
            ) from exc
        except ResponseStatusCodeError as exc:
            raise NetworkError(f"the Overpass API at {url} answered with an error: {_status_error(exc)}") from exc
        except InsufficientResponseError as exc:
            if "No matching features" not in str(exc):
                raise NetworkError(f"the Overpass API at {url} sent no usable answer: {first_line(exc)}") from exc
            frame = empty_frame()
        remark = remarks[0] if remarks else _failed_answer(files or [])
        if remark is not None:
            raise NetworkError(f"the Overpass API at {url} answered with an error: {remark}; try again later "
                               "(a smaller area, a larger `timeout`), or work offline with `osm_file`")
        stamp = _overpass_timestamp(files or [])
    if date:
        stamp = date
    said = dict.fromkeys(" ".join(str(w.message).split()) for w in heard_osmnx if issubclass(w.category, UserWarning))
    return OSMFeatures(
        frame=normalise(frame, table),
        source=f"Overpass API {url}" + (f" (as of {date})" if date else ""),
        timestamp=stamp,
        timestamp_kind="snapshot" if stamp else None,
        warnings=tuple(f"osmnx: {w}" + (f" ({len(files)} requests, each answer cached)" if files else "")
                       for w in said),
    )


def _drop_unreadable(files: list[Path]) -> list[Path]:
    """Remove the cached answers among ``files`` that are not whole JSON (a write cut by a full disk or a kill) or
    no Overpass result (a gateway's ``{"message": ...}``, cached before geosr refused them): osmnx failed on them
    with a JSONDecodeError or a KeyError, an internal error, at every later run (found in review); removed, they are
    asked again. Those that cannot be removed (a read-only cache) are returned."""
    kept = []
    for f in files:
        try:
            content = f.read_bytes()
            json.loads(content)
            if _not_overpass(content) is None:
                continue
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            pass
        try:
            f.unlink(missing_ok=True)
        except OSError:
            kept.append(f)
    return kept


# The bound of this thread's fetch that osmnx's slot wait keeps to (its timeout; None outside a fetch), and when the
# wait before the request now asked began (None between requests)
_BOUND = threading.local()
_INSTALLING = threading.Lock()


@contextlib.contextmanager
def _pause_within(timeout: float) -> Iterator[None]:
    """osmnx's wait for a free slot (read from the server's ``/status`` before each request) bounded by ``timeout``:
    a server asking for a longer wait is busy (_Busy), one without a readable status gets none (osmnx waited 60 s
    per request, silently, whatever the timeout; found in review). osmnx's function is wrapped once for the process
    (each thread's fetch sets its own bound; outside one it is osmnx's own): swapped in and out around each fetch,
    fetches in two threads left another's bound in place for good (found in review). osmnx internals: left as they
    are if moved."""
    _install_bounded_pause()
    _BOUND.limit, _BOUND.began = timeout, None
    try:
        yield
    finally:
        _BOUND.limit = None


def _install_bounded_pause() -> None:
    try:
        from osmnx import _overpass
    except ImportError:  # pragma: no cover
        return
    with _INSTALLING:
        original = getattr(_overpass, "_get_overpass_pause", None)
        if original is None or getattr(original, "geosr_bounded", False):
            return

        def bounded(base_endpoint: str, **kwargs: Any) -> float:
            timeout = getattr(_BOUND, "limit", None)
            if timeout is None:
                return original(base_endpoint, **kwargs)
            first = getattr(_BOUND, "began", None) is None  # osmnx's own call before a request, not its recursion
            if first:  # (each request's wait: the fetch's whole time counted, a split area failed; found in review)
                _BOUND.began = time.monotonic()
            try:
                if time.monotonic() - _BOUND.began > timeout:  # ("Currently running" answers: asked again in 5 s)
                    raise _Busy(f"no free slot within the timeout of {timeout:g} s")
                wait = original(base_endpoint, **{**kwargs, "default_pause": 0})
            finally:
                if first:
                    _BOUND.began = None
            if wait > timeout:
                raise _Busy(f"its status asks to wait {wait:.0f} s for a free slot, longer than the timeout of "
                            f"{timeout:g} s")
            return wait

        bounded.geosr_bounded = True  # type: ignore[attr-defined]
        _overpass._get_overpass_pause = bounded


def _status_error(exc: Exception) -> str:
    """osmnx's error for an answer with an error status, in one line: Overpass's own error texts (in its HTML page,
    ``<p><strong>Error</strong>: line 1: static error: ...</p>``, after a first line that says nothing) where the
    page holds them."""
    text = str(exc)
    found = re.findall(r"<strong[^>]*>\s*Error\s*</strong>\s*:(.*?)</p>", text, re.DOTALL | re.IGNORECASE)
    errors = [" ".join(html.unescape(re.sub(r"<[^>]+>", "", e)).split()) for e in found]
    if not errors:
        return first_line(exc)
    return f"{first_line(exc).split('<', 1)[0].strip()} {'; '.join(e for e in errors if e)}".strip()


def _not_overpass(content: bytes) -> str | None:
    """What makes a JSON answer no Overpass result (no list of ``elements``) in words, with its ``message`` or
    ``error`` if it has one; None for an Overpass result and for an answer that is not JSON (osmnx says what it
    is)."""
    if re.search(rb'"elements"\s*:\s*\[', content) or not content.lstrip().startswith(b"{"):
        return None
    try:
        data = json.loads(content)
    except ValueError:
        return None  # (cut short, or not JSON: osmnx's error says so)
    if not isinstance(data, dict):
        return None
    said = next((data[k] for k in ("message", "error", "detail") if isinstance(data.get(k), str)), None)
    return "JSON without a list of elements" + (f": {' '.join(said.split())[:200]}" if said else "")


def _remark(content: bytes) -> str | None:
    """The error an Overpass answer reports in its ``remark`` (a query that timed out or ran out of memory: HTTP 200
    with the features found until then, maybe none), as one line; None for an answer without one."""
    if b'"remark"' not in content:  # (the answer is parsed only when it may hold one)
        return None
    try:
        remark = json.loads(content).get("remark")
    except (ValueError, AttributeError):
        return None
    if isinstance(remark, str) and "error" in remark.lower():
        return (remark.strip().splitlines() or [remark])[0][:200]
    return None


def _failed_answer(files: list[Path]) -> str | None:
    """The error an answer in osmnx's cache reports (:func:`_remark`; osmnx 2.1 caches no answer with a remark,
    earlier versions did), or None. Such an answer is removed, so that the next run asks again."""
    for f in files:
        try:
            remark = _remark(f.read_bytes())
        except OSError:
            continue
        if remark is not None:
            f.unlink(missing_ok=True)
            return remark
    return None


def _overpass_timestamp(files: list[Path]) -> str | None:
    stamps = []
    for f in files:
        try:
            stamp = json.loads(f.read_text(encoding="utf-8")).get("osm3s", {}).get("timestamp_osm_base")
        except (OSError, ValueError, AttributeError):
            continue
        if stamp:
            stamps.append(str(stamp))
    # the oldest: what the whole map is complete up to, where cached answers of several ages were joined (the newest
    # was given; found in review)
    return min(stamps) if stamps else None
