"""What a path names: a local file, or something GDAL opens as it is (no rasterio here: the batch manifest
reader uses it without loading the GIS stack)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Iterable

from geosr.errors import NetworkError

# URLs (https://, s3://, gs://, zip+https://, ...; rasterio maps them onto GDAL's virtual file systems) and GDAL
# paths (/vsizip/, /vsicurl/, GDAL's /vsicurl?OPTIONS&url=URL form, ...): opened by GDAL as they are, never checked
# on the local disk
REMOTE = re.compile(r"^(/vsi[a-z0-9_]+/|/vsicurl\?|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)

# GDAL's /vsicurl/ path with options: /vsicurl?[OPTION=VALUE&]*url=URL (the URL percent-encoded), e.g.
# /vsicurl?max_retry=3&url=https%3A%2F%2Fh%2Fa.tif
VSICURL_OPTIONS = re.compile(r"^/vsicurl\?(.*)$", re.DOTALL)  # GDAL: case-sensitive


# GDAL configuration while a remote file is opened: no listing of a URL's "folder" (GDAL would look for sidecars
# there). Only while opening: set for the process it would also hide local files' .aux.xml, .ovr and .msk.
OPEN_REMOTE_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


# What is read over a network (GDAL's network file systems, also inside an archive's: /vsizip/vsicurl/URL, as geosr
# advises for a zip on a server; URLs), as opposed to GDAL's local virtual paths (/vsizip/, /vsigzip/, /vsimem/,
# file://)
NETWORK = re.compile(r"^((/vsi(zip|tar|gzip|7z|rar)/)+/?|/)(vsi(curl|s3|gs|az|adls|oss|swift|hdfs|webhdfs)[a-z_]*/|"
                     r"vsicurl\?)|^((https?|ftp|s3|gs|az|oss)://|[a-z0-9]+\+(https?|s3|gs|az)://)", re.IGNORECASE)


# GDAL's subdataset names, as a container lists them: DRIVER:"file":name (NETCDF, HDF5, HDF4_EOS:EOS_GRID:"file":...),
# DRIVER:file:name (GPKG, SENTINEL2_L2A), DRIVER:index:file (GTIFF_DIR, PDF, NITF_IM), for these drivers (a colon
# in an ordinary file's name is no subdataset)
SUBDATASET_DRIVERS = ("NETCDF", "HDF5", "HDF4", "HDF4_SDS", "HDF4_EOS", "HDF4_GR", "GPKG", "GTIFF_DIR", "PDF",
                      "NITF_IM", "SENTINEL2_L1B", "SENTINEL2_L1C", "SENTINEL2_L1C_TILE", "SENTINEL2_L2A", "ZARR",
                      "KEA")
_SUBDATASET = re.compile(rf"^({'|'.join(SUBDATASET_DRIVERS)}):(.+)$", re.IGNORECASE)


# rasterio's URL forms of local files: file:///a.tif, and of archive members, zip:///a.zip!in/b.tif (also zip+file://,
# tar://, gzip://): read from the local file or archive they name, which no output may replace
_LOCAL_URL = re.compile(r"^(?:(zip|tar|gzip)(?:\+file)?|file)://(.*)$", re.IGNORECASE | re.DOTALL)


def local_form(path: str) -> str:
    """The GDAL path rasterio reads for its URL form of a local file (``file:///a.tif`` -> ``/a.tif``) or archive
    member (``zip:///a.zip!in/b.tif`` -> ``/vsizip//a.zip/in/b.tif``); any other path as it is. By hand: rasterio's
    own parser is private."""
    m = _LOCAL_URL.match(path)
    if m is None:
        return path
    scheme, rest = m.group(1), m.group(2)
    if scheme is None:  # file://[localhost]/a.tif
        return rest[len("localhost"):] if rest.lower().startswith("localhost/") else rest
    archive, bang, member = rest.partition("!")
    return f"/vsi{scheme.lower()}/{archive}" + (f"/{member.lstrip('/')}" if bang and member else "")


def is_subdataset(path: str) -> bool:
    """Whether ``path`` is a GDAL subdataset name (its container local or not); an existing file is not."""
    return _SUBDATASET.match(path) is not None and not os.path.lexists(path)


def subdataset_file(path: str) -> str | None:
    """The local file a GDAL subdataset name (``GPKG:scene.gpkg:table``, ``NETCDF:"a.nc":var``,
    ``GTIFF_DIR:2:pages.tif``) reads; None for other paths and for a container read over the network or through
    GDAL's virtual file systems (:func:`subdataset_container`)."""
    found = subdataset_container(path)
    return None if not found or REMOTE.match(found) or found.startswith("/vsi") else found


# a URL's scheme ("https", "/vsicurl/https"): a URL follows, whose colons are its own (an HDF5 file a.h5 is no scheme)
_URL_SCHEME_END = re.compile(r"(^|/vsi[a-z0-9_]+/)(https?|ftp|s3|gs|az)$", re.IGNORECASE)
_PORT = re.compile(r"^\d+(/|$)")  # a URL's port and its path


def subdataset_container(path: str) -> str | None:
    """The container a GDAL subdataset name reads, as written (a local file, a URL, a /vsizip/ or /vsicurl/ path);
    None for other paths."""
    m = _SUBDATASET.match(path) if not os.path.lexists(path) else None
    if m is None:
        return None
    rest = m.group(2)
    quoted = re.search(r'"([^"]+)"', rest)
    if quoted is not None:
        found = quoted.group(1)
    else:
        parts = rest.split(":")
        if len(parts) > 1 and parts[0].isdigit():  # DRIVER:index:file (GTIFF_DIR, PDF, NITF_IM): the rest is the file
            while len(parts) > 1 and parts[0].isdigit():
                parts = parts[1:]
            return ":".join(parts) or None
        found, parts = parts[0], parts[1:]  # DRIVER:file:name[:more]: the file, with the colons of its own
        if len(found) == 1 and found.isalpha() and parts:  # a Windows drive: C:\data\a.gpkg
            found, parts = f"{found}:{parts[0]}", parts[1:]
        if _URL_SCHEME_END.search(found) and parts and parts[0].startswith("//"):  # GPKG:/vsicurl/https://h:8080/a:t
            found, parts = f"{found}:{parts[0]}", parts[1:]
            if parts and _PORT.match(parts[0]):
                found, parts = f"{found}:{parts[0]}", parts[1:]
    return found or None


def curl_url(path: str) -> str | None:
    """The URL a /vsicurl/ path reads (``/vsicurl/https://h/a.tif``, and GDAL's form with options
    ``/vsicurl?max_retry=3&url=https%3A%2F%2Fh%2Fa.tif``, percent-decoded as GDAL does: both https://h/a.tif); None
    for other paths and for the form with options without a ``url``."""
    if path.startswith("/vsicurl/"):
        return path[len("/vsicurl/"):]
    m = VSICURL_OPTIONS.match(path)
    if m is None:
        return None
    for option in m.group(1).split("&"):  # as GDAL splits them, then decodes each
        key, _, value = urllib.parse.unquote(option).partition("=")
        if key.lower() == "url":
            return value
    return None


def malformed_url(path: str) -> str | None:
    """Why the HTTP(S) URL ``path`` (or /vsicurl/ path) cannot be asked for as written, None when it can (and for
    other paths): a space or control character, which no request may carry (a space is written %20)."""
    url = curl_url(path) or path
    if not re.match(r"^https?://", url, re.IGNORECASE):
        return None
    bad = re.search(r"[\x00-\x20\x7f]", url)
    if bad is not None:
        what = "a space" if bad.group() == " " else f"the control character {bad.group()!r}"
        return f"holds {what}, which a URL cannot (write it as %{ord(bad.group()):02X})"
    # (no host, a port beyond 65535: "no answer from its server; try again", exit 1, retried by a batch; found in
    # review)
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return "names no server (nothing between // and the path)"
    try:
        _ = parts.port  # (urllib checks the range as it reads it)
    except ValueError:
        return f"names a port that cannot be ({parts.netloc.rpartition(':')[2]}: ports are 0 to 65535)"
    return None


def named(path: str) -> str:
    """How a message names ``path``: a /vsicurl?OPTIONS&url=URL path by the URL it reads (its options and percent
    signs are no name), any other path as it is."""
    return (curl_url(path) or path) if VSICURL_OPTIONS.match(path) else path


def refuse_undecodable(path: str, *, output: bool = False) -> None:
    """Refuse a path that is not valid UTF-8 (a Latin-1 name unpacked from an old archive: Python holds its bytes as
    surrogates), which GDAL cannot be given and no message can print: one sentence, with the bytes shown as �,
    where it was an internal UnicodeEncodeError (found in review)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        from geosr.errors import InputError

        raise InputError(f"{shown}: the {'output' if output else 'file'}'s name is not valid UTF-8, which GDAL "
                         f"cannot {'write' if output else 'open'}; {'name it' if output else 'rename it'} in UTF-8"
                         ) from None


def recorded_options(options_json: str, paths: Iterable[str] = ()) -> str:
    """A command's options as JSON (``to_json``) as an output may carry them (the tag ``GEOSR_OPTIONS``): the
    options named in ``paths`` (those that may name a file), each of a list of files too, as :func:`recorded_path`
    has them; every other text with its URLs without their queries (a CRS's WKT holds "/": it is no path)."""
    path_options = frozenset(paths)

    def shareable(value: Any, path: bool) -> Any:
        if isinstance(value, str) and path:
            return ",".join(recorded_path(p.strip()) for p in (value.split(",") if is_file_list(value) else [value]))
        if isinstance(value, str) and "," in value and not re.search(r"[\[\](){}\"']", value):
            # a list (a box, bands): spaced as the command line's tuples are joined, the same bytes either way (a
            # WKT's or a JSON text's commas are no list's)
            return ",".join(without_query(named(p.strip())) for p in value.split(","))
        if isinstance(value, str):  # (a /vsicurl?OPTIONS&url=URL path as its URL: its query would leave "/vsicurl")
            return without_query(named(value))
        if isinstance(value, list):
            return [shareable(v, path) for v in value]
        if isinstance(value, dict):
            return {k: shareable(v, path) for k, v in value.items()}
        return value

    options = json.loads(options_json)
    return json.dumps({k: shareable(v, k in path_options) for k, v in options.items()}, sort_keys=True,
                      separators=(",", ":"))


def recorded_path(value: str) -> str:
    """An option's text as an output records it: a URL read over the network without its query
    (:func:`without_query`; a /vsicurl?OPTIONS&url=URL path as its URL: its own query would leave only "/vsicurl"),
    a local path by its file name (:func:`recorded_name`: an output shared carried its author's folders, home and
    user name, and its bytes changed with the spelling of a path, relative or absolute; found in review), anything
    else (a keyword, a bounding box, a CRS) as it is."""
    if over_network(value):
        return without_query(named(value))
    if "/" in value or os.sep in value or os.path.lexists(value):
        return recorded_name(value)
    return value


def recorded_name(path: str) -> str:
    """An input as an output's tags name it: its file name (a /vsicurl?OPTIONS&url=URL path: its URL's, without
    its query; a subdataset: its name with its container's file name, ``GPKG:scene.gpkg:table``); band files
    (``a.tif,b.tif``) each by theirs."""
    container = subdataset_container(path)
    if container is not None:
        return path.replace(container, Path(without_query(named(curl_url(container) or container))).name, 1)
    parts = [p.strip() for p in path.split(",")] if is_file_list(path) else [path]
    # a URL's query left out: it may hold a signature or token, which an output shared must not carry
    return ",".join(Path(without_query(named(p))).name for p in parts)


def is_file_list(path: str) -> bool:
    """Files (or URLs) separated by commas, not itself a file. A text beginning with a URL is a list only when every
    part is a URL or an existing file (a URL's query may hold commas); local parts that do not exist are named
    when the list is read."""
    if "," not in path or Path(path).exists():
        return False
    parts = [q.strip() for q in path.split(",")]
    return all(q and (REMOTE.match(q) or Path(q).exists()) for q in parts) or not REMOTE.match(path)


def over_network(path: str) -> bool:
    """Whether ``path`` is read over a network (a URL, /vsicurl/, /vsis3/, ...), not from a local file."""
    return bool(NETWORK.match(path))


PROVENANCE_SUFFIX = ".provenance.tif"  # <output stem> + this: the provenance raster
STAC_SUFFIX = ".stac.json"  # <output stem> + this: the STAC item


def sidecar_paths(output: str | os.PathLike[str]) -> dict[str, Path]:
    """The files a run writes beside ``output``, by what they are: its provenance raster (``<stem>.provenance.tif``,
    with a reference; an earlier run's is removed otherwise) and its STAC item (``<stem>.stac.json``, always)."""
    out = Path(output)
    return {"provenance raster": out.with_name(out.stem + PROVENANCE_SUFFIX),
            "STAC item": out.with_name(out.stem + STAC_SUFFIX)}


# The files of a vector data set in several files beside its main one (a shapefile's index, attributes, CRS and
# encoding, its spatial indexes; MapInfo's .tab parts), matched by stem: written by hand, as neither pyogrio nor
# rasterio lists a vector data set's files
_VECTOR_PARTS = {".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".fix", ".shp.xml", ".qmd"),
                 ".tab": (".dat", ".map", ".id", ".ind")}


def vector_parts(path: str | os.PathLike[str]) -> list[str]:
    """The other files a local vector file is made of (a shapefile's ``.shx``, ``.dbf``, ``.prj``...), those that
    exist: an output written over one destroys the input (found in review: `--aoi area.shp -o area.shx`)."""
    p = Path(path)
    suffixes = _VECTOR_PARTS.get(p.suffix.lower(), ())
    if not suffixes or not p.parent.is_dir():
        return []
    stem = p.name[: -len(p.suffix)].lower()
    return sorted(str(f) for f in p.parent.iterdir() if f != p and f.name.lower().startswith(stem + ".")
                  and f.name[len(stem):].lower() in suffixes)


def pam_path(path: str | os.PathLike[str]) -> Path:
    """GDAL's auxiliary metadata file of ``path`` (``<name>.aux.xml``), which GDAL and QGIS read with it."""
    path = Path(path)
    return path.with_name(path.name + ".aux.xml")


# the files GDAL reads beside a raster as part of it, besides its metadata file (pam_path): what each holds
GDAL_EXTERNAL = {".ovr": "external overviews", ".msk": "external mask"}


def gdal_sidecars(path: str | os.PathLike[str]) -> dict[str, Path]:
    """The files GDAL reads beside the raster ``path`` as part of it: its metadata file (``.aux.xml``), external
    overviews (``.ovr``, which QGIS's "Build pyramids" writes) and mask (``.msk``). A new raster written there must not
    inherit an earlier one's: its viewers would show the old overviews, its mask would hide its pixels."""
    path = Path(path)
    return {"metadata file": pam_path(path),
            **{what: path.with_name(path.name + suffix) for suffix, what in GDAL_EXTERNAL.items()}}


def json_named(path: str) -> bool:
    """Whether ``path`` (a URL without its query) is named as a JSON document: ``.json``, or ``.geojson`` as a STAC
    item is often saved (GDAL's STACIT driver read one as a container of rasters; found in review)."""
    return without_query(path).lower().endswith((".json", ".geojson"))


def without_query(path: str) -> str:
    """A URL without its query (``item.json?token=...``: a signature or token too), an http(s) or ftp URL without
    its fragment (``#...``, which no server sees), and without the user name and password it may carry
    (``https://user:secret@host/...``); a local path as it is (``?`` and ``#`` may be in a file name, and ``#`` in a
    /vsizip/ or /vsis3/ path's: cut there, a run recorded its LR as "run" for ``/vsizip//data/run#2/a.zip/a.tif``;
    found in review)."""
    url = path.strip()
    if not REMOTE.match(url):
        return path
    url = url.split("?")[0]
    if _FRAGMENTED.match(url):
        url = url.split("#")[0]
    return without_credentials(url)


_FRAGMENTED = re.compile(r"^(/vsicurl/)?(https?|ftp)://", re.IGNORECASE)  # URLs whose "#" begins a fragment


# (GDAL chains its prefixes with one slash or two: /vsizip/vsicurl/URL, /vsizip//vsicurl/URL)
_CREDENTIALS = re.compile(r"^((?:/?vsi[a-z0-9_]+/+)*[a-z][a-z0-9+.-]*://)[^/?#]*@", re.IGNORECASE)


# (to the authority's last "@", as a URL's parser reads it: a password holding a raw "@" was shown from there; not
# across a quote, bracket or backslash, which no authority holds: JSON's `"http://h", "e": "u@x"` is two values)
_CREDENTIALS_IN_TEXT = re.compile(r"((?<![A-Za-z0-9+.-])[a-z][a-z0-9+.-]*://)[^/?#\s\"'<>\\()\[\]{}]*@", re.IGNORECASE)


def credentials_hidden(text: str) -> str:
    """``text`` (a message, a list of files) with every URL in it without the ``user:password@`` of its authority:
    what a file geosr writes (a batch's results manifest) may say."""
    return _CREDENTIALS_IN_TEXT.sub(r"\1", text)


def without_credentials(url: str) -> str:
    """``url`` (also behind a /vsi prefix) without the ``user:password@`` of its authority: what an output that is
    shared may say of it."""
    return _CREDENTIALS.sub(r"\1", url, count=1)


# A URL's query parameters that sign it rather than name its file: Azure SAS, S3 and GCS presigned URLs,
# CloudFront, and the plain token or signature of other servers (matched without case)
SIGNING = re.compile(r"^(sig|signature|token|se|st|sp|sv|sr|spr|srt|ss|si|skoid|sktid|skt|ske|sks|skv|expires|"
                     r"key-pair-id|policy|x-amz-.+|x-goog-.+)$", re.IGNORECASE)


def unsigned(path: str) -> str:
    """``path`` as it names its file: an HTTP(S) URL's (or a /vsicurl/ path's) query without the parameters that
    sign it (:data:`SIGNING`), which change each time the same file's URL is signed again (a job on a re-signed URL
    was "other inputs"; found in review); its other parameters, which may name the file, stay. Without the
    ``user:password@`` of its authority too: it names no file, and this is written into records (a batch job's)."""
    path = without_credentials(path)
    url = path.strip()
    prefix = ""
    if url.startswith("/vsicurl/"):
        prefix, url = "/vsicurl/", url[len("/vsicurl/"):]
    elif VSICURL_OPTIONS.match(url) and curl_url(url):  # GDAL's form with options: named by the URL it reads
        prefix, url = "/vsicurl/", curl_url(url) or url
    if not re.match(r"^https?://", url, re.IGNORECASE) or "?" not in url:
        return path
    base, _, query = url.partition("?")
    kept = [part for part in query.split("&") if part and not SIGNING.match(urllib.parse.unquote(part.split("=")[0]))]
    return prefix + base + ("?" + "&".join(kept) if kept else "")


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL or a GDAL virtual path rather than a local file."""
    return bool(REMOTE.match(path))


def file_key(path: str | os.PathLike[str]) -> tuple:
    """What names one file: its device and inode when it exists (so hard links and symbolic links to one file
    share it), else the path it would have (``realpath``). URLs and GDAL paths: the path as written."""
    path = local_form(os.fspath(path))  # (file:///a.tif is /a.tif)
    if is_remote(path):
        return ("remote", path)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return ("path", path if "\0" in path else os.path.realpath(path))  # (a NUL: no file's; realpath raised)
    return ("file", st.st_dev, st.st_ino)


def unwritable(folder: str | os.PathLike[str]) -> str | None:
    """Why files cannot be made in ``folder`` (or, if it does not exist yet, in the nearest folder above it, where
    it would be made), or None when they can."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" + ("" if existing == Path(folder) else ", where it would be made")
    return None


def http_head(url: str, timeout: float = 10.0, *, method: str = "HEAD",
              follow: bool = False) -> tuple[int | None, Any, str | None] | None:
    """An HTTP(S) URL's (or /vsicurl/ path's) HEAD answer: (status, headers (``.get`` ignores the names' case),
    None), or (None, {}, why) when none came (no connection, a timeout); None for other paths. Redirects are
    followed only with ``follow`` (urllib would follow one with a GET, a whole download): else a 3xx is the
    answer. urllib: GDAL has no stat call that rasterio exposes. ``method="GET"`` asks for the first byte only
    (as GDAL's reads begin; the range is kept across redirects)."""
    import http.client
    import urllib.error
    import urllib.request

    target = curl_url(url) or url
    if not target.lower().startswith(("http://", "https://")):
        return None

    try:
        target, asked = gdal_request(target)
        if method == "GET":
            asked["Range"] = "bytes=0-0"
        request = urllib.request.Request(target, method=method, headers=asked)
        with gdal_opener(follow=follow).open(request, timeout=timeout) as resp:
            return resp.status, resp.headers, None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers or {}, None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # (a bad status line, a header too long)
        return None, {}, str(getattr(exc, "reason", exc)) or type(exc).__name__


def gdal_opener(*, follow: bool = True) -> Any:
    """A urllib opener that reaches servers as GDAL's requests do: its TLS settings (``GDAL_HTTP_UNSAFESSL``,
    ``GDAL_CURL_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` / ``SSL_CERT_FILE``) and proxy (``GDAL_HTTP_PROXY``, else the
    environment's), following redirects (``follow``; else a 3xx is the answer, as an HTTPError) without the
    credentials :func:`gdal_request` adds when they lead to another scheme, host or port, as curl does (urllib
    sends every header on; found in review: a password went to the redirect's host, which GDAL never sends it to).
    GDAL settings that urllib cannot follow (a client certificate) may still make geosr's own requests fail."""
    import ssl
    import urllib.parse
    import urllib.request

    env = os.environ
    context: ssl.SSLContext | None
    if env.get("GDAL_HTTP_UNSAFESSL", "NO").upper() in ("YES", "ON", "TRUE", "1"):
        context = ssl._create_unverified_context()  # noqa: S323 - as the user told GDAL
    else:
        bundle = env.get("GDAL_CURL_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
        context = ssl.create_default_context(cafile=bundle) if bundle and Path(bundle).is_file() else None

    class Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if not follow:  # the 3xx answer itself
                return None
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            a, b = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
            if new is not None and (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
                for name in list(new.headers):
                    if name.lower() not in ("range", "user-agent", "accept"):
                        del new.headers[name]
            return new

    handlers: list[Any] = [Redirects(), urllib.request.HTTPSHandler(context=context)]
    if env.get("GDAL_HTTP_PROXY"):
        proxy = env["GDAL_HTTP_PROXY"]
        proxy = proxy if "://" in proxy else f"http://{proxy}"
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


def gdal_request(url: str) -> tuple[str, dict[str, str]]:
    """``url`` and the headers GDAL sends with a request for it, so that geosr's own requests (a file's identity,
    why a read failed, a STAC item) are answered as GDAL's are: the configuration's ``GDAL_HTTP_HEADERS`` (lines, or
    commas outside double quotes), ``GDAL_HTTP_HEADER_FILE``, ``GDAL_HTTP_BEARER`` (with ``GDAL_HTTP_AUTH=BEARER``),
    ``GDAL_HTTP_USERPWD`` (else the URL's ``user:password@``, taken out of it, else ``~/.netrc`` or
    ``GDAL_HTTP_NETRC_FILE`` unless ``GDAL_HTTP_NETRC`` is NO) and ``GDAL_HTTP_USERAGENT``. From the environment,
    where geosr gives GDAL its configuration (no rasterio here). A server answering geosr's request 401 while GDAL
    read the file left a changed file unnoticed at ``--resume`` (found in review)."""
    import base64

    env = os.environ
    headers: dict[str, str] = {}
    lines: list[str] = []
    text = env.get("GDAL_HTTP_HEADERS", "")
    if text:
        # lines, else entries separated by commas outside double quotes (an escaped \" is no quote)
        lines += re.split(r"\r?\n", text) if "\n" in text else \
            re.split(r',(?=(?:(?:[^"\\]|\\.)*"(?:[^"\\]|\\.)*")*(?:[^"\\]|\\.)*$)', text)
    if env.get("GDAL_HTTP_HEADER_FILE"):
        with contextlib.suppress(OSError):  # GDAL names it at the read
            lines += Path(env["GDAL_HTTP_HEADER_FILE"]).read_text(encoding="utf-8").splitlines()
    for line in lines:
        # double quotes removed as GDAL's tokenizer removes them (`X-Note: "a, b"` sends a, b), \" and \\ kept as
        # the character they escape
        line = re.sub(r'\\(["\\])|"', lambda m: m.group(1) or "", line.strip())
        key, sep, value = line.partition(":")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
    parts = urllib.parse.urlsplit(url)
    user = env.get("GDAL_HTTP_USERPWD")
    if parts.username is not None:  # urllib would take user:password@host for a host and port
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        user = user or f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    if not user and parts.hostname and env.get("GDAL_HTTP_NETRC", "YES").upper() not in ("NO", "FALSE", "OFF", "0"):
        import netrc

        try:
            found = netrc.netrc(env.get("GDAL_HTTP_NETRC_FILE") or None).authenticators(parts.hostname)
        except (OSError, netrc.NetrcParseError):
            found = None
        if found:
            user = f"{found[0]}:{found[2]}"
    if env.get("GDAL_HTTP_BEARER") and env.get("GDAL_HTTP_AUTH", "").upper() == "BEARER":
        headers.setdefault("Authorization", f"Bearer {env['GDAL_HTTP_BEARER']}")
    elif user:
        headers.setdefault("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
    if env.get("GDAL_HTTP_USERAGENT"):
        headers.setdefault("User-Agent", env["GDAL_HTTP_USERAGENT"])
    return url, headers


def network_failure(url: str) -> str | None:
    """Why ``url`` could not be read when the network or its server is at fault (no answer, 5xx, 408, 429): a
    failure worth retrying, not a bad input; None when the server answered otherwise (e.g. 404) or for other
    paths. Asks as GDAL does (a GET of a range, following redirects): a server may answer HEAD and fail every
    read."""
    answer = http_head(url, method="GET", follow=True)
    if answer is None:
        return None
    status, _, why = answer
    if status is None:
        return f"no answer from its server ({why})"
    if status >= 500 or status in (408, 429):
        return f"its server answered HTTP {status}"
    if status < 300:
        return cut_short(url)
    return None


def served_size(url: str, timeout: float = 10.0) -> tuple[str | None, int | None]:
    """Whether the server of an HTTP(S) URL (or /vsicurl/ path) answers, and the size in bytes of the file as it
    gives it (the total of the answer to a GET of the first byte, else the whole answer's length): (why there was
    no answer, None), or (None, the size or None when the server does not say; also for other paths)."""
    answer = http_head(url, timeout=timeout, method="GET", follow=True)
    if answer is None:
        return None, None
    status, headers, why = answer
    if status is None:
        return why or "no answer", None
    return None, _file_size(status, headers)


def _file_size(status: int, headers: Any) -> int | None:
    """The file's size as an answer to a GET of its first byte gives it: the range's total, else the whole length."""
    total = re.fullmatch(r"\s*bytes\s+\d+-\d+/(\d+)\s*", headers.get("Content-Range") or "")
    if status == 206 and total:
        return int(total.group(1))
    length = (headers.get("Content-Length") or "").strip()
    return int(length) if status == 200 and length.isdigit() else None


def served_identity(url: str, timeout: float = 10.0) -> list[str]:
    """What identifies the file an HTTP(S) URL (or /vsicurl/ path) serves: its size, modification time and entity
    tag as ``size=N``, ``Last-Modified=...``, ``ETag=...`` (those the server gives); empty for other paths and when
    no file is served. Asked as GDAL reads (a GET of the first byte, redirects followed): the file's own answer,
    not a redirect's (whose Location, a signed URL, may change at every request), also from a server refusing HEAD."""
    answer = http_head(url, timeout=timeout, method="GET", follow=True)
    if answer is None:
        return []
    status, headers, why = answer
    # no answer for a setting of GDAL's that urllib does not follow (a TLS trust or client certificate, a proxy's
    # login): GDAL reads the file, so the run must not fail here (found in review): not identified
    unfollowed = status is None and re.search(r"ssl|certificate|proxy", why or "", re.IGNORECASE)
    if (status is None and not unfollowed) or (status is not None and (status >= 500 or status in (408, 429))):
        said = f"no answer ({why})" if status is None else f"HTTP {status}"  # not a different file: ask again later
        raise NetworkError(f"{named(url)}: its server did not say which file it serves ({said}), so a changed file "
                           "could not be told from the one read before; try again later")
    if status not in (200, 206):  # refused (GDAL names it at the read), or not answered to urllib (above)
        return [f"unidentified={'HTTP ' + str(status) if status is not None else 'no answer'}"]
    size = _file_size(status, headers)
    return ([f"size={size}"] if size is not None else []) + [f"{k}={headers[k]}" for k in ("Last-Modified", "ETag")
                                                             if headers.get(k)]


def refused(url: str) -> bool:
    """Whether ``url``'s server answers that it is missing or not to be had (a 4xx other than 408 and 429): the
    input's fault. HTTP(S) only (False for other paths), redirects followed."""
    answer = http_head(url, method="GET", follow=True)
    status = answer[0] if answer is not None else None
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def fetch_failure(exc: BaseException) -> str | None:
    """Why a urllib read failed when the network or the server is at fault, in :func:`network_failure`'s words
    (no answer, 5xx, 408, 429, a transfer cut short); None for an answer that is the input's (e.g. 404)."""
    import http.client
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"its server answered HTTP {exc.code}" if exc.code >= 500 or exc.code in (408, 429) else None
    if isinstance(exc, http.client.IncompleteRead):
        return "its server cut the transfer" + (f" ({exc.expected} bytes short)" if exc.expected else "")
    if isinstance(exc, (OSError, http.client.HTTPException)):  # URLError, timeouts, resets, a bad status line
        return f"no answer from its server ({getattr(exc, 'reason', None) or exc})"
    return None


def network_error(path: str, failure: str) -> NetworkError:
    """The error for ``path`` that could not be read for ``failure`` (the network's or its server's fault): one
    sentence; the CLI exits 1 and ``geosr batch`` retries it."""
    return NetworkError(f"{path}: cannot be read now: {failure}; try again")


def cut_short(url: str, size: int = 1 << 16, timeout: float = 10.0) -> str | None:
    """Why a read of ``url``'s first ``size`` bytes ended before the length its server gave (a connection cut
    mid-transfer; GDAL then reports a damaged file), or None when it arrived whole or its length cannot be told.
    The length is the answer's Content-Length, else its Content-Range (a server may announce no Content-Length and
    close the connection at the end: a cut then looks like the end), else the size the server's HEAD answer gives.
    HTTP(S) only. At most ``size`` bytes are read, also from a server that answers the range with the whole file."""
    import http.client
    import urllib.request

    # asked as GDAL asks (its credentials, TLS settings and proxy): a plain request took a URL's user:password@ for
    # its host, and a server wanting credentials answered 401: "no answer from its server", exit 1 (found in review)
    source = curl_url(url) or url
    target, asked = gdal_request(source)
    request = urllib.request.Request(target, headers={**asked, "Range": f"bytes=0-{size - 1}"})
    try:
        with gdal_opener().open(request, timeout=timeout) as resp:
            status, headers = resp.status, resp.headers
            body = resp.read(size)
    except http.client.IncompleteRead as exc:
        return f"its server cut the transfer ({len(exc.partial)} of {len(exc.partial) + (exc.expected or 0)} bytes)"
    except urllib.error.HTTPError:  # an answer (a status), not a transfer cut: the read's own error says it
        return None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"no answer from its server ({getattr(exc, 'reason', exc)})"
    expected = _answer_length(source, status, headers, timeout)  # (asked again with its credentials)
    if expected is not None and len(body) < min(expected, size):
        return f"its server cut the transfer ({len(body)} of {min(expected, size)} bytes)"
    return None


def _answer_length(url: str, status: int, headers: Any, timeout: float) -> int | None:
    """The length of the body of ``url``'s answer (``status``, ``headers``) to a GET of a range: as announced
    (Content-Length), as its range says (Content-Range: bytes FIRST-LAST/SIZE), or, for the whole file without a
    length, the file's size by a HEAD; None when none of them tells."""
    announced = (headers.get("Content-Length") or "").strip()
    if announced.isdigit():
        return int(announced)
    span = re.match(r"\s*bytes\s+(\d+)-(\d+)/", headers.get("Content-Range") or "", re.IGNORECASE)
    if span is not None:
        return int(span.group(2)) - int(span.group(1)) + 1
    if status != 200:  # a part of the file, of a length not told
        return None
    head = http_head(url, timeout=timeout, follow=True)
    whole = ((head[1].get("Content-Length") or "").strip() if head is not None and head[0] == 200 else "")
    return int(whole) if whole.isdigit() else None


# the suffixes of raster files geosr reads by name
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


def maybe_stac_api(url: str) -> bool:
    """An http(s) URL whose last path segment has no suffix, or is an item ID under ``items/`` (STAC APIs serve
    items as .../items/ID, and IDs hold dots: HLS.S30.T33UUB.2023163T101031.v2.0; found in review) without a file
    suffix geosr knows."""
    m = re.match(r"^https?://[^/]+(/[^?#]*)?", url, re.IGNORECASE)
    if not m:
        return False
    parts = (m.group(1) or "").rstrip("/").rsplit("/", 2)
    last = parts[-1]
    return "." not in last or (len(parts) > 1 and parts[-2] == "items"
                               and Path(last).suffix.lower() not in (*RASTER_SUFFIXES, *_FILE_SUFFIXES))


# suffixes of files that are no STAC item (besides RASTER_SUFFIXES), for an item ID's last dot
_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".nc", ".h5", ".hdf", ".zip", ".gpkg", ".json", ".xml",
                  ".txt", ".geojson", ".cog")
