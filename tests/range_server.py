"""A static HTTP server on 127.0.0.1 with range requests (what GDAL's /vsicurl/ reads by), for the URL tests.

    python tests/range_server.py FOLDER      # prints the port, then serves until killed
    python tests/range_server.py FOLDER N    # the same, but every GET after the N-th is answered 503
    python tests/range_server.py FOLDER cut  # the same, but every GET's body stops after 64 bytes (connection closed)
    python tests/range_server.py FOLDER cut-unannounced  # the same, without announcing the body's length
    python tests/range_server.py FOLDER moved  # every request is redirected (302) to a URL answered 503
    python tests/range_server.py FOLDER no-range  # range requests are ignored: every GET gets the whole file (200)

In every mode a path under a `private/` folder is answered 403 (forbidden), as a bucket without credentials does,
one under an `auth/` folder 401 without the credentials of AUTHORIZED, `PREFIX/halfcut/NAME` serves NAME but stops
every body half way (announced whole, the connection closed), as a server that fails while pixels are read does,
`PREFIX/signed/NAME` is redirected (302) to `PREFIX/NAME?sig=...`, a new signature at every request, as a download
portal does, `PREFIX/nohead/NAME` serves NAME but answers HEAD 405, as some servers do, and `PREFIX/latest.json`
is redirected (302) to `PREFIX/items/item.json`, as a catalogue's pointer to its newest item is.

It runs in its own process: GDAL holds the Python interpreter lock while it opens a URL, so a server thread in the
test's own process could never answer. Every server serves under its own random first path segment (printed after
the port): GDAL keeps what it read of a URL for the life of the process, and a later server on a reused port must
not be answered from that cache.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

GETS = [0]
FAIL_AFTER: int | None = None
CUT = [False]
UNANNOUNCED = [False]
MOVED = [False]
NO_RANGE = [False]
PREFIX = "/" + secrets.token_hex(6)
# what a path under an `auth/` folder needs (else 401): a bearer token, or user u with password pw
AUTHORIZED = ("Bearer s3cret", "Basic dTpwdw==")


@contextlib.contextmanager
def serving(folder: Path, *args: str) -> Iterator[str]:
    """``folder`` served by this script (``args``: its failure setting); yields the base URL, unique to this server
    so that GDAL's per-process cache of URLs never answers for it."""
    server = subprocess.Popen([sys.executable, __file__, str(folder), *args], stdout=subprocess.PIPE, text=True)
    try:
        port, prefix = server.stdout.readline().split()
        yield f"http://127.0.0.1:{int(port)}{prefix}"
    finally:
        server.kill()
        server.wait()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        if MOVED[0] and self.path.startswith(PREFIX + "/moved/"):
            self.send_error(503)
            return None
        if MOVED[0] and self.path.startswith(PREFIX + "/"):
            self.send_response(302)
            self.send_header("Location", PREFIX + "/moved" + self.path[len(PREFIX):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404)
            return None
        if self.path.startswith(PREFIX + "/signed/"):
            self.send_response(302)
            name = self.path[len(PREFIX + "/signed"):].split("?")[0]
            self.send_header("Location", f"{PREFIX}{name}?sig={secrets.token_hex(4)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path.split("?")[0] == PREFIX + "/latest.json":  # a catalogue's pointer to its newest item
            self.send_response(302)
            self.send_header("Location", f"{PREFIX}/items/item.json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path.startswith(PREFIX + "/nohead/"):
            if self.command == "HEAD":
                self.send_error(405)
                return None
            self.path = PREFIX + self.path[len(PREFIX + "/nohead"):]
        if self.path.startswith(PREFIX + "/halfcut/"):
            self.halfcut = True
            self.path = PREFIX + self.path[len(PREFIX + "/halfcut"):]
        if "/private/" in self.path:
            self.send_error(403)
            return None
        if "/auth/" in self.path and self.headers.get("Authorization") not in AUTHORIZED:
            self.send_error(401)
            return None
        path = Path(self.translate_path(self.path[len(PREFIX):]))
        if not path.is_file():
            self.send_error(404)
            return None
        return path

    def do_HEAD(self) -> None:  # noqa: N802
        path = self._file()
        if path is not None:
            self.send_response(200)
            if not NO_RANGE[0]:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
            self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        GETS[0] += 1
        if FAIL_AFTER is not None and GETS[0] > FAIL_AFTER:
            self.send_error(503)
            return
        path = self._file()
        if path is None:
            return
        data = path.read_bytes()
        m = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m and not NO_RANGE[0]:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            body = data[start : end + 1]
        else:
            self.send_response(200)
            body = data
        self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
        if not NO_RANGE[0]:
            self.send_header("Accept-Ranges", "bytes")
        if not UNANNOUNCED[0]:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = len(body) // 2 if getattr(self, "halfcut", False) else 64 if CUT[0] and len(body) > 64 else None
        if cut is not None:  # send part of the body (announced whole, or not), close the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # a client that stopped reading (GDAL, without ranges)
            self.close_connection = True


if __name__ == "__main__":
    folder = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    CUT[0] = mode in ("cut", "cut-unannounced")
    UNANNOUNCED[0] = mode == "cut-unannounced"
    MOVED[0] = mode == "moved"
    NO_RANGE[0] = mode == "no-range"
    FAIL_AFTER = int(mode) if mode.isdigit() else None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: RangeHandler(*a, directory=folder, **k))
    print(server.server_address[1], PREFIX, flush=True)
    server.serve_forever()
