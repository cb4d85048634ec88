"""Inputs beyond local files (issue 20.1): URLs served on 127.0.0.1, GDAL paths, zip members; a bad URL is one
sentence and exit 2, an unreachable host or a failing server one sentence and exit 1 (worth a retry), fast."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import zipfile

import numpy as np
import pytest
import rasterio
from affine import Affine
from tests.conftest import smooth_field
from tests.range_server import serving
from typer.testing import CliRunner

from geosr.cli.app import app


@pytest.fixture
def served(tmp_path, raster_factory):
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    with serving(folder) as url:
        yield url, folder


def test_an_https_style_url_is_read_as_gdal_reads_it(served, tmp_path):
    url, folder = served
    out = tmp_path / "out.tif"
    res = CliRunner().invoke(app, ["upscale", f"{url}/lr.tif", "-x", "2", "-m", "bicubic", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds, rasterio.open(folder / "lr.tif") as src:
        assert ds.shape == (48, 48) and ds.crs == src.crs
    stac = json.loads(out.with_name("out.stac.json").read_text())
    assert [link["href"] for link in stac["links"] if link["rel"] == "derived_from"] == [f"{url}/lr.tif"]


def test_a_url_s_password_is_never_printed_nor_written(served, tmp_path, monkeypatch):
    """`http://user:password@host/...` was printed whole: in errors, the summary, `geosr info` (text and --json),
    and written into the run's lock files (left behind by a killed run); and a page that is no raster behind such a
    URL was "no answer from its server (Name or service not known); try again", exit 1, where it is bad input
    (geosr's own request took user:password@host for the host; found in review)."""
    import sys

    from geosr.io.lock import JobLock

    url, folder = served
    signed = url.replace("http://", "http://u:s3cret@")
    (folder / "page.tif").write_text("<html><body>sign in</body></html>")
    runs = [["info", f"{signed}/lr.tif"], ["info", f"{signed}/lr.tif", "--json"],
            ["upscale", f"{signed}/nothing.tif", "-x", "2", "-o", str(tmp_path / "a.tif")],
            ["upscale", f"{signed}/nothing.tif", "-x", "2", "-o", str(tmp_path / "a.tif"), "--json"],
            ["upscale", f"{signed}/lr.tif", "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "b.tif")],
            ["upscale", f"{signed}/page.tif", "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "c.tif")]]
    said = [CliRunner().invoke(app, args) for args in runs]
    assert [r.exit_code for r in said] == [0, 0, 2, 2, 0, 2], [r.output for r in said]
    assert all("s3cret" not in r.output + r.stderr for r in said), [r.output + r.stderr for r in said]
    assert f"{url}/lr.tif" in said[0].output and json.loads(said[1].stdout)["files"][0]["path"] == f"{url}/lr.tif"
    assert "page.tif: not a raster GDAL can read" in _said(said[5]), _said(said[5])
    monkeypatch.setattr(sys, "argv", ["geosr", "upscale", f"{signed}/lr.tif", "-o", "x.tif"])
    with JobLock(tmp_path / "lock", output=tmp_path / "x.tif"):
        held = (tmp_path / "lock").read_text()
    assert "s3cret" not in held and f"{url}/lr.tif" in held, held


def test_a_tiff_of_several_pages_is_refused_over_a_url_as_a_local_one_is(served, tmp_path):
    """A TIFF of two pages was read as its first page when given as a URL, refused (naming its pages) as a file."""
    url, folder = served
    profile = dict(driver="GTiff", width=16, height=16, count=1, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(10, 0, 500000, 0, -10, 5000000))
    for value, extra in ((50, {}), (150, {"APPEND_SUBDATASET": "YES"})):
        with rasterio.open(folder / "pages.tif", "w", **profile, **extra) as ds:
            ds.write(np.full((1, 16, 16), value, np.uint8))
    res = CliRunner().invoke(app, ["upscale", f"{url}/pages.tif", "-x", "2", "-m", "bicubic", "-o",
                                   str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and "pages.tif: is a container of 2 rasters (GTIFF_DIR:1:" in res.stderr, res.output
    assert not list(tmp_path.glob("o.*"))


def test_a_missing_url_is_bad_input_and_an_unreachable_one_a_network_failure(served, tmp_path):
    """A 404 is the input's fault (exit 2); no answer, or a 5xx at the open, is the network's or the server's
    (exit 1, which geosr batch retries: it was exit 2 and "not a raster GDAL can read", never retried)."""
    url, _ = served
    res = CliRunner().invoke(app, ["upscale", f"{url}/nothing.tif", "-x", "2", "-o", str(tmp_path / "a.tif")])
    assert res.exit_code == 2 and f"{url}/nothing.tif: no such file on its server (HTTP 404)" in _said(res), _said(res)
    # a bucket that wants credentials: said so (it was "cannot be read as a raster (HTTP response code: 403)")
    res = CliRunner().invoke(app, ["upscale", f"{url}/private/lr.tif", "-x", "2", "-o", str(tmp_path / "a.tif")])
    assert res.exit_code == 2 and "its server refused it (HTTP 403); it may need credentials" in _said(res), _said(res)
    # a URL with user:password@ was "no answer from its server (Name or service not known); try again", exit 1
    # (urllib took user:password@host for the host; found in review)
    signed_in = url.replace("http://", "http://u:pw@")
    res = CliRunner().invoke(app, ["upscale", f"{signed_in}/nothing.tif", "-x", "2", "-o", str(tmp_path / "a.tif")])
    assert res.exit_code == 2 and "no such file on its server (HTTP 404)" in _said(res), _said(res)
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["upscale", "http://127.0.0.1:9/lr.tif", "-x", "2", "-o", str(tmp_path / "b.tif")])
    assert res.exit_code == 1 and "127.0.0.1:9" in res.output and "no answer" in res.output and "try again" in \
        res.output, res.output
    assert time.monotonic() - t0 < 30
    assert not list(tmp_path.glob("*.tif"))


def test_a_server_failing_every_read_is_a_network_failure_at_the_open(tmp_path, raster_factory):
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    with serving(folder, "0") as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/lr.tif", "-x", "2", "-m", "bicubic",
                                       "-o", str(tmp_path / "o.tif")])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "answered HTTP 503" in said and "not a raster" not in said, said
    assert not (tmp_path / "o.tif").exists()


def test_zip_members_and_gdal_paths(raster_factory, tmp_path):
    src = raster_factory("lr.tif", (smooth_field(3, 16, 16, 6) * 200 + 20).astype(np.uint8))
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src, "inner/lr.tif")
    for path in (f"/vsizip/{archive}/inner/lr.tif", f"zip://{archive}!inner/lr.tif"):
        out = tmp_path / f"o{len(os.listdir(tmp_path))}.tif"
        res = CliRunner().invoke(app, ["upscale", path, "-x", "2", "-m", "bicubic", "-o", str(out)])
        assert res.exit_code == 0, res.output
        with rasterio.open(out) as ds:
            assert ds.shape == (32, 32)
    res = CliRunner().invoke(app, ["upscale", f"/vsizip/{archive}/inner/missing.tif", "-x", "2",
                                   "-o", str(tmp_path / "m.tif")])
    assert res.exit_code == 2 and "missing.tif" in res.output


def test_rasterio_url_forms_of_local_files_are_protected_and_fingerprinted(raster_factory, tmp_path):
    """zip:///a.zip!b.tif and file:///a.tif name local files, but were taken for remote ones: `-o a.zip --overwrite`
    replaced the input archive with the output, and a changed archive left the job's fingerprint as it was (found in
    review). Now refused as the /vsizip/ form is, and the archive's size and time are in the fingerprint."""
    from geosr.pipeline.job import plan_upscale

    src = raster_factory("lr.tif", (smooth_field(3, 16, 16, 6) * 200 + 20).astype(np.uint8))
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src, "inner/lr.tif")
    kept = archive.read_bytes(), src.read_bytes()
    for given, out in ((f"zip://{archive}!inner/lr.tif", archive), (f"zip+file://{archive}!/inner/lr.tif", archive),
                       (f"file://{src}", src)):
        res = CliRunner().invoke(app, ["upscale", given, "-x", "2", "-m", "bicubic", "-o", str(out), "--overwrite",
                                       "--json"])
        error = json.loads(res.output)["error"]
        assert res.exit_code == 2 and error.startswith(f"{out}: is ") and "LR of this run" in error, error
    assert (archive.read_bytes(), src.read_bytes()) == kept

    def fingerprint():
        with plan_upscale(f"zip://{archive}!inner/lr.tif", output=None, scale=2, model="bicubic",
                          dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    first = fingerprint()
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("notes.txt", "another member")
    assert fingerprint() != first


def test_a_url_input_changed_on_its_server_is_a_changed_input(served):
    """The job's fingerprint (what --resume and geosr batch compare) holds what the server says of a URL input
    (size, modification time, entity tag), not its name alone: a file replaced on the server is a new input."""
    import os

    from geosr.pipeline import job as job_module
    from geosr.pipeline.job import plan_upscale

    url, folder = served

    def fingerprint():
        with plan_upscale(f"{url}/lr.tif", output=None, scale=2, model="bicubic", dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    first = fingerprint()
    assert first[0] == f"{url}/lr.tif" and any(str(v).startswith("size=") for v in first[1:])
    assert fingerprint() == first
    lr = folder / "lr.tif"
    data = lr.read_bytes()
    lr.write_bytes(data + b"\0" * 16)  # the same raster, another file
    os.utime(lr, (1_000_000_000, 1_000_000_000))
    assert fingerprint() == first  # asked again within a minute: the process's answer (one HEAD per URL and minute)
    job_module._REMOTE_STATS.clear()
    assert fingerprint() != first


@pytest.mark.parametrize("credentials", ["bearer", "headers", "userinfo", "userpwd"])
def test_a_url_behind_credentials_is_identified_as_gdal_reads_it(served, monkeypatch, credentials):
    """A server that wants credentials, given to GDAL (GDAL_HTTP_HEADERS, GDAL_HTTP_BEARER, GDAL_HTTP_USERPWD, the
    URL's user:password@), answered geosr's own request 401: the input was identified by its URL alone, so a file
    replaced on the server went unnoticed by --resume (two versions in one output) and batch ("up to date"; found
    in review). geosr's requests now carry GDAL's credentials."""
    import os

    from geosr.pipeline import job as job_module
    from geosr.pipeline.job import plan_upscale

    url, folder = served
    (folder / "auth").mkdir(exist_ok=True)
    lr = folder / "auth" / "lr.tif"
    lr.write_bytes((folder / "lr.tif").read_bytes())
    target = f"{url}/auth/lr.tif"
    if credentials == "bearer":
        monkeypatch.setenv("GDAL_HTTP_AUTH", "BEARER")
        monkeypatch.setenv("GDAL_HTTP_BEARER", "s3cret")
    elif credentials == "headers":
        monkeypatch.setenv("GDAL_HTTP_HEADERS", "X-Other: a, b\r\nAuthorization: Bearer s3cret")
    elif credentials == "userpwd":
        monkeypatch.setenv("GDAL_HTTP_USERPWD", "u:pw")
    else:
        target = target.replace("http://", "http://u:pw@")
    job_module._REMOTE_STATS.clear()

    def fingerprint():
        job_module._REMOTE_STATS.clear()
        with plan_upscale(target, output=None, scale=2, model="bicubic", dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    first = fingerprint()
    assert any(str(v).startswith("size=") for v in first[1:]), first
    lr.write_bytes(lr.read_bytes() + b"\0" * 16)
    os.utime(lr, (1_000_000_000, 1_000_000_000))
    assert fingerprint() != first


def test_a_server_that_cannot_say_which_file_it_serves_is_a_network_failure_not_a_changed_file(monkeypatch):
    """A slow or failing answer to the identity request made the input "changed" (identified by its URL alone
    against a recorded size and date): batch refused the job's own output, advising --overwrite (found in review).
    A network failure now, retried as one."""
    from geosr.errors import NetworkError
    from geosr.io import paths

    for answer in ((None, {}, "timed out"), (503, {}, None), (429, {}, None), (None, {}, "Connection reset by peer")):
        monkeypatch.setattr(paths, "http_head", lambda *a, _answer=answer, **k: _answer)
        with pytest.raises(NetworkError, match=r"http://127.0.0.1:9/a.tif: its server did not say which file it "
                                               r"serves \((no answer \(.*\)|HTTP 503|HTTP 429)\)"):
            paths.served_identity("http://127.0.0.1:9/a.tif")
    monkeypatch.setattr(paths, "http_head", lambda *a, **k: (401, {}, None))
    assert paths.served_identity("http://127.0.0.1:9/a.tif") == ["unidentified=HTTP 401"]


def test_a_url_signed_again_is_the_same_input(served):
    """A re-signed URL of an unchanged file (`?sig=` of an Azure SAS, an S3 presigned URL) was a changed input: geosr
    batch failed the finished job as "made from other inputs", --resume refused, and the batch record kept the
    token (found in review). The signing parameters are no part of the name; the others, which may name the file,
    are."""
    from geosr.io.paths import unsigned
    from geosr.pipeline.job import plan_upscale

    url, _ = served

    def fingerprint(query):
        with plan_upscale(f"{url}/lr.tif?{query}", output=None, scale=2, model="bicubic", dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    first = fingerprint("sig=TOKEN_ONE&sv=2024-01-01&se=2026-12-06")
    assert first == fingerprint("sig=TOKEN_TWO&sv=2024-01-01&se=2026-12-07")
    assert first[0] == f"{url}/lr.tif" and "TOKEN" not in str(first)
    assert fingerprint("X-Amz-Signature=1&X-Amz-Date=2") == first
    assert fingerprint("v=2&sig=A")[0] == f"{url}/lr.tif?v=2"  # another parameter may name another file
    assert unsigned("/vsicurl/https://h/a.tif?token=5&layer=b") == "/vsicurl/https://h/a.tif?layer=b"
    assert unsigned("/vsicurl?max_retry=3&url=https%3A%2F%2Fh%2Fa.tif%3Fsig%3DONE") == "/vsicurl/https://h/a.tif"
    assert unsigned("scenes/a?sig=b.tif") == "scenes/a?sig=b.tif"  # a local name is as it is


def test_a_url_input_is_identified_by_the_file_served_through_redirects_and_without_head(served):
    """The identity of a URL input was its server's HEAD answer, redirects not followed: behind a redirect to a
    signed URL (a download portal) it was the Location, new at every request (`--resume` always refused, as a
    changed input) and blind to the file; a server refusing HEAD gave the URL alone, blind to any change (found in
    review). Now the file's own answer, as GDAL reads it."""
    import os

    from geosr.pipeline import job as job_module
    from geosr.pipeline.job import plan_upscale

    url, folder = served

    def fingerprint(path):
        job_module._REMOTE_STATS.clear()
        with plan_upscale(path, output=None, scale=2, model="bicubic", dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    paths = (f"{url}/signed/lr.tif", f"{url}/nohead/lr.tif")
    first = [fingerprint(p) for p in paths]
    assert all(any(str(v).startswith("size=") for v in f[1:]) for f in first), first
    assert [fingerprint(p) for p in paths] == first
    lr = folder / "lr.tif"
    lr.write_bytes(lr.read_bytes() + b"\0" * 16)  # the same raster, another file
    os.utime(lr, (1_000_000_000, 1_000_000_000))
    assert all(fingerprint(p) != f for p, f in zip(paths, first))


def test_a_vrt_of_remote_sources_and_a_subdataset_of_a_remote_container_are_fingerprinted(served, tmp_path):
    """A local VRT reading a URL was identified by the VRT file alone (a changed source unseen by `--resume`, and the
    changes `cd auto` detected kept for it), and a subdataset of a container on a server or in a zip
    (GTIFF_DIR:1:/vsicurl/URL) crashed every upscale (found in review)."""
    import os

    import rasterio.shutil

    from geosr.pipeline import job as job_module
    from geosr.pipeline.job import _all_local, plan_upscale

    url, folder = served
    vrt = tmp_path / "remote.vrt"
    rasterio.shutil.copy(f"/vsicurl/{url}/lr.tif", vrt, driver="VRT")
    archive = tmp_path / "pages.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "lr.tif", "lr.tif")
    paths = (str(vrt), f"GTIFF_DIR:1:/vsicurl/{url}/lr.tif", f"GTIFF_DIR:1:/vsizip/{archive}/lr.tif")

    def fingerprint(path):
        job_module._REMOTE_STATS.clear()
        with plan_upscale(path, output=None, scale=2, model="bicubic", dry_run=True) as job:
            return job.fingerprint["inputs"][0]

    first = [fingerprint(p) for p in paths]
    assert not _all_local(str(vrt)) and not _all_local(paths[1])
    lr = folder / "lr.tif"
    lr.write_bytes(lr.read_bytes() + b"\0" * 16)
    os.utime(lr, (1_000_000_000, 1_000_000_000))
    assert [fingerprint(p) != f for p, f in zip(paths, first)] == [True, True, False]
    res = CliRunner().invoke(app, ["upscale", paths[2], "-x", "2", "-m", "bicubic", "-o", str(archive),
                                   "--overwrite", "--json"])
    assert res.exit_code == 2 and "is read by the LR of this run" in json.loads(res.output)["error"], res.output
    out = tmp_path / "o.tif"
    res = CliRunner().invoke(app, ["upscale", paths[1], "-x", "2", "-m", "bicubic", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.shape == (48, 48)


def test_a_url_with_a_space_is_bad_input_not_a_network_failure(served, tmp_path):
    """A URL holding a literal space is refused by the request before it is sent: it was reported as "no answer from
    its server ...; try again" (exit 1, retried by batch) while the file is served as a%20b.tif (found in review)."""
    url, folder = served
    (folder / "a b.tif").write_bytes((folder / "lr.tif").read_bytes())
    out = tmp_path / "o.tif"
    for given in (f"{url}/a b.tif", f"/vsicurl/{url}/a b.tif"):
        res = CliRunner().invoke(app, ["upscale", given, "-x", "2", "-m", "bicubic", "-o", str(out), "--json"])
        error = json.loads(res.output)["error"]
        assert res.exit_code == 2 and error == (f"{url}/a b.tif: is not a valid URL: it holds a space, which a URL "
                                                "cannot (write it as %20)" if given.startswith("http") else
                                                f"{given}: is not a valid URL: it holds a space, which a URL cannot "
                                                "(write it as %20)"), error
    assert not out.exists()
    res = CliRunner().invoke(app, ["upscale", f"{url}/a b.tif,{url}/lr.tif,{url}/lr.tif", "-x", "2", "-m",
                                   "bicubic", "-o", str(out), "--json"])  # a band file of a list, as one URL
    error = json.loads(res.output)["error"]
    assert res.exit_code == 2 and error.endswith(f"its band file {url}/a b.tif is not a valid URL: it holds a space, "
                                                 "which a URL cannot (write it as %20)"), error
    res = CliRunner().invoke(app, ["upscale", f"{url}/a%20b.tif", "-x", "2", "-m", "bicubic", "-o", str(out)])
    assert res.exit_code == 0, res.output
    # no server named, or a port that cannot be: "no answer from its server; try again" (exit 1; found in review)
    for given, why in (("http:///www/lr.tif", "it names no server (nothing between // and the path)"),
                       ("http://127.0.0.1:99999/lr.tif", "it names a port that cannot be (99999: ports are 0 to "
                                                         "65535)")):
        res = CliRunner().invoke(app, ["info", given, "--json"])
        assert res.exit_code == 2 and json.loads(res.output)["error"] == f"{given}: is not a valid URL: {why}"


def test_a_server_that_fails_mid_read_is_a_network_failure_not_a_corrupt_file(tmp_path):
    """A URL that opened and then stopped answering (503) was reported as a corrupt file, exit 2, and geosr batch
    took it for bad input (never retried): it is the network's or the server's failure, exit 1 (batch retries it)."""
    from affine import Affine

    folder = tmp_path / "www"
    folder.mkdir()
    a = (np.random.default_rng(0).random((3, 2048, 2048)) * 255).astype(np.uint8)  # read in many requests
    with rasterio.open(folder / "big.tif", "w", driver="GTiff", width=2048, height=2048, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True,
                       blockxsize=256, blockysize=256) as ds:
        ds.write(a)
    with serving(folder, "2") as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/big.tif", "-x", "2", "-m", "bicubic",
                                       "-o", str(tmp_path / "o.tif"), "--force-resources"])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "pixels stopped arriving while reading" in said and "corrupt" not in said, said
    assert not (tmp_path / "o.tif").exists()


def test_what_is_read_over_a_network():
    """A failure mid-read is the network's only for what is read over one: GDAL's local virtual paths (a zip's
    member, /vsimem/) fail as the file they are."""
    from geosr.io.paths import is_remote, over_network

    for path in ("https://h/a.tif", "http://h/a.tif", "s3://b/a.tif", "gs://b/a.tif", "/vsicurl/https://h/a.tif",
                 "/vsis3/b/a.tif", "zip+https://h/a.zip!/a.tif", "/vsicurl_streaming/https://h/a.tif"):
        assert over_network(path) and is_remote(path), path
    for path in ("/vsizip/a.zip/a.tif", "/vsigzip/a.tif.gz", "/vsimem/a.tif", "file:///a.tif", "a.tif"):
        assert not over_network(path), path


def test_a_remote_stac_items_assets_changed_on_the_server_are_a_changed_input(tmp_path):
    """The fingerprint of a STAC item served over HTTP held its URL alone (remote members were dropped), so geosr
    batch skipped a job whose band files had changed on the server as "up to date"."""
    import os

    from tests.s2_products import band_files, item_over_band_files

    from geosr.pipeline import job as job_module

    folder = tmp_path / "www"
    band_files(folder)
    item_over_band_files(folder)
    with serving(folder) as base:
        url = f"{base}/item.json"
        job_module._REMOTE_STATS.clear()
        first = job_module._file_id(url)
        assert any("size=" in str(v) for v in first[1:])  # what the server says of the item itself
        assert sum(isinstance(v, list) and str(v[0]).endswith(".tif") for v in first) >= 3  # each band file's
        red = next(folder.glob("*_B04_*.tif"))
        red.write_bytes(red.read_bytes() + b"\0" * 16)
        os.utime(red, (1_000_000_000, 1_000_000_000))
        job_module._REMOTE_STATS.clear()
        second = job_module._file_id(url)
        assert second != first
    # and a refused resume names the band file, not the item (found in review)
    from geosr.pipeline.fingerprints import fingerprint_changes

    assert fingerprint_changes({"inputs": [first]}, {"inputs": [second]}) == [
        f"the LR item.json: its file {red.name} changed (its size, Last-Modified or ETag on its server)"]


def test_a_hash_in_a_gdal_path_is_no_fragment():
    """`#` begins a fragment in an http(s) URL only: a /vsizip/ or /vsis3/ path was cut there, and a run recorded its
    LR as "run" for /vsizip//data/run#2/a.zip/a.tif (found in review)."""
    from geosr.io.paths import without_query

    assert without_query("/vsizip//data/run#2/a.zip/a.tif") == "/vsizip//data/run#2/a.zip/a.tif"
    assert without_query("/vsis3/bucket/k#1.tif") == "/vsis3/bucket/k#1.tif"
    assert without_query("https://u:p@h/item.json?sig=1#frag") == "https://h/item.json"
    assert without_query("/vsicurl/https://h/a.tif#f") == "/vsicurl/https://h/a.tif"


def test_a_stac_item_with_a_byte_order_mark_or_a_fragment_is_an_item(tmp_path):
    """An item saved with a UTF-8 byte-order mark (Windows tools write one) was "not JSON", and a URL with a
    `#fragment` was "not a raster GDAL can read" (found in review)."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder)
    item = item_over_band_files(folder)
    (folder / "bom.json").write_bytes(b"\xef\xbb\xbf" + item.read_bytes())
    (folder / "bom").write_bytes(b"\xef\xbb\xbf" + item.read_bytes())  # no suffix: sniffed
    with serving(folder) as base:
        for where in (str(folder / "bom.json"), f"{base}/bom.json", f"{base}/bom", f"{base}/item.json#frag"):
            res = CliRunner().invoke(app, ["info", where, "--json"])
            assert res.exit_code == 0, (where, res.output)
            assert len(json.loads(res.stdout)["files"][0]["bands"]) == 4, where


def test_a_remote_stac_item_reached_through_a_redirect_reads_its_assets_beside_it(tmp_path):
    """An item fetched through a redirect (a catalogue's `latest.json` to `items/item.json`) had its relative asset
    hrefs read from the URL given: `latest.json`'s folder, 404 (found in review). They are read from where it was
    found, as RFC 3986 says."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder / "items")
    item_over_band_files(folder / "items")
    with serving(folder) as base:
        res = CliRunner().invoke(app, ["info", f"{base}/latest.json", "--json"])
    assert res.exit_code == 0, res.output


def test_a_band_file_cut_while_its_pixels_are_read_is_named_whether_the_item_is_a_file_or_a_url(tmp_path):
    """A band file whose transfer stopped mid-pixels was named (with the cut) when its STAC item was a local file,
    but an item given as a URL said libtiff's "TIFFFillTile: Read error at row 4294967295", no band file named."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder / "items")
    item = item_over_band_files(folder / "items")
    red = next(p.name for p in (folder / "items").glob("*_B04_*.tif"))
    with serving(folder) as base:
        doc = json.loads(item.read_text())
        doc["assets"]["B04"]["href"] = f"{base}/halfcut/items/{red}"
        (folder / "items" / "cut.json").write_text(json.dumps(doc))
        local_green = str(next((folder / "items").glob("*_B03_*.tif")))
        for command, given in (("upscale", str(folder / "items" / "cut.json")),
                               ("upscale", f"{base}/items/cut.json"),
                               # info said "may be corrupt", exit 2, for a local item and a list of band files; the
                               # item's band file unnamed when the item was a URL (found in review)
                               ("info", str(folder / "items" / "cut.json")), ("info", f"{base}/items/cut.json"),
                               ("info", f"{local_green},{base}/halfcut/items/{red}")):
            args = ["-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")] if command == "upscale" else []
            res = CliRunner().invoke(app, [command, given, *args])
            said = _said(res)
            assert res.exit_code == 1, said
            assert f"pixels stopped arriving while reading its band file {base}/halfcut/items/{red}: its server " \
                "cut the transfer" in said and "TIFF" not in said, said
    assert not (tmp_path / "o.tif").exists()


def test_a_network_fault_while_batch_checks_a_job_fails_that_job_and_the_others_run(tmp_path, raster_factory,
                                                                                    monkeypatch):
    """The check phase took a job whose input URL's server answered 503 for an invalid row: the whole batch exit 2,
    "nothing was run", though a new run could succeed. It is now checked again (CHECK_RETRY_DELAYS), then that job
    fails (NetworkError, exit 1) and the valid jobs run; a URL its server says is missing (404) stays invalid."""
    import geosr.pipeline.batch.plan as plan

    monkeypatch.setattr(plan, "CHECK_RETRY_DELAYS", (0.1,))
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    raster_factory("local.tif", (smooth_field(3, 24, 24, 6) * 200 + 20).astype(np.uint8))
    with serving(folder, "0") as failing, serving(folder) as working:
        (tmp_path / "jobs.yaml").write_text(
            f"jobs:\n  - {{lr: {failing}/lr.tif, out: far.tif, x: 2, model: bicubic}}\n"
            "  - {lr: local.tif, out: near.tif, x: 2, model: bicubic}\n")
        res = CliRunner().invoke(app, ["batch", str(tmp_path / "jobs.yaml"), "--workers", "1", "--dashboard", "none",
                                       "--json"])
        assert res.exit_code == 1, res.output
        jobs = {j["id"]: j for j in json.loads(res.stdout)["jobs"]}
        assert jobs["near"]["status"] == "ok" and (tmp_path / "near.tif").exists()
        assert jobs["far"]["status"] == "failed" and jobs["far"]["error_type"] == "NetworkError", jobs["far"]
        assert "answered HTTP 503" in jobs["far"]["error"] and not (tmp_path / "far.tif").exists()
        # never planned, its windows are unknown (they read 0), as a dry run says too (it said OutputExistsError)
        assert (jobs["far"]["windows"], jobs["far"]["window_rows"], jobs["far"]["parts"]) == (None, None, None)
        res = CliRunner().invoke(app, ["batch", str(tmp_path / "jobs.yaml"), "--dry-run", "--json"])
        far = next(j for j in json.loads(res.stdout)["jobs"] if j["id"] == "far")
        assert far["error_type"] == "NetworkError" and far["windows"] is None, far
        (tmp_path / "jobs.yaml").write_text(f"jobs:\n  - {{lr: {working}/missing.tif, out: gone.tif, x: 2}}\n")
        res = CliRunner().invoke(app, ["batch", str(tmp_path / "jobs.yaml"), "--dashboard", "none"])
        assert res.exit_code == 2 and "missing.tif" in res.output and "nothing was run" in res.output, res.output


def test_a_transfer_cut_while_the_header_is_read_is_a_network_failure_and_a_short_file_bad_input(tmp_path,
                                                                                                raster_factory):
    """A server that closed the connection in the middle of the TIFF header gave exit 2, "cannot be read as a
    raster" (GDAL sees a damaged directory): the network's fault was the input's, and geosr batch never retried it.
    Now the first bytes are read again and a transfer shorter than announced is a NetworkError (exit 1); a file
    whose header is itself cut short, served whole, stays bad input (exit 2)."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    data = (folder / "lr.tif").read_bytes()
    (folder / "short.tif").write_bytes(data[:100])  # ends inside its header
    with serving(folder, "cut") as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/lr.tif", "-x", "2", "-m", "bicubic",
                                       "-o", str(tmp_path / "o.tif")])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "its server cut the transfer" in said and "try again" in said, said
    with serving(folder) as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/short.tif", "-x", "2", "-m", "bicubic",
                                       "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and "short.tif" in res.output and "cut the transfer" not in res.output, res.output
    assert not (tmp_path / "o.tif").exists()


def test_a_file_cut_short_in_its_pixels_on_a_working_server_is_bad_input(tmp_path):
    """A GeoTIFF uploaded in part (its header whole, its pixels cut short), served whole and correctly, was told as
    "pixels stopped arriving ...: the server or the network failed; try again" (exit 1; geosr batch retried it for
    nothing), directly and as a STAC item's band file: its blocks running past the size the server gives tell the
    file's fault (exit 2, one sentence, nothing written)."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder)
    green = next(folder.glob("*_B03_10m.tif"))
    data = green.read_bytes()
    item = item_over_band_files(folder)
    green.write_bytes(data[: len(data) * 3 // 4])
    with serving(folder) as url:
        for source, which in ((f"{url}/{green.name}", "the file is cut short"),
                              (f"{url}/{item.name}", f"its band file {url}/{green.name} is cut short")):
            res = CliRunner().invoke(app, ["upscale", source, "-x", "2", "-m", "bicubic",
                                           "-o", str(tmp_path / "o.tif")])
            said = _said(res)
            assert res.exit_code == 2 and which in said and "try again" not in said, (source, said)
            assert not list(tmp_path.glob("o.*"))


def test_no_url_query_goes_into_the_files_a_run_writes(tmp_path, raster_factory):
    """A signed URL's query (a token) was left out of GEOSR_INPUTS and the STAC links but written in full into the
    GEOSR_OPTIONS tag of every output (`ref`, `cd`, `map`, `aoi`, `model` as given)."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    raster_factory("www/ref.tif", (smooth_field(3, 48, 48, 6) * 200 + 20).astype(np.uint8),
                   transform=rasterio.Affine(5.0, 0, 500000.0, 0, -5.0, 5000000.0))
    token = "X-Amz-Signature=SECRETTOKEN123"
    with serving(folder) as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/lr.tif?{token}", "--ref", f"{url}/ref.tif?{token}", "-x",
                                       "2", "-m", "reference-paste", "--cd", "none", "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in tmp_path.glob("o*"))
    assert written == ["o.provenance.tif", "o.provenance.tif.aux.xml", "o.stac.json", "o.tif"], written
    for name in written:
        assert b"SECRETTOKEN" not in (tmp_path / name).read_bytes(), name
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert json.loads(ds.tags()["GEOSR_OPTIONS"])["ref"] == f"{url}/ref.tif"
    with serving(folder) as url:  # detect-changes wrote both URLs whole into its GEOSR_CHANGE_DETECTION tag
        res = CliRunner().invoke(app, ["detect-changes", f"{url}/lr.tif?{token}", "--ref", f"{url}/ref.tif?{token}",
                                       "-o", str(tmp_path / "c.tif")])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in tmp_path.glob("c*"))
    assert written == ["c.tif", "c.tif.aux.xml"], written
    for name in written:
        assert b"SECRETTOKEN" not in (tmp_path / name).read_bytes(), name
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert json.loads(ds.tags()["GEOSR_CHANGE_DETECTION"])["lr"] == f"{url}/lr.tif"
    # GDAL's /vsicurl/ forms: the STAC item linked "/vsicurl" (no file), the encoded URL with its token, or a GDAL
    # path no STAC client follows (found in review); the URL they read, without its query
    from urllib.parse import quote

    with serving(folder) as url:
        for i, lr in enumerate((f"/vsicurl?max_retry=3&url={quote(f'{url}/lr.tif?{token}', safe='')}",
                                f"/vsicurl/{url}/lr.tif?{token}")):
            res = CliRunner().invoke(app, ["upscale", lr, "-x", "2", "-m", "bicubic", "-o",
                                           str(tmp_path / f"v{i}.tif")])
            assert res.exit_code == 0, res.output
            item = json.loads((tmp_path / f"v{i}.stac.json").read_text())
            assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == [f"{url}/lr.tif"]
            assert b"SECRETTOKEN" not in (tmp_path / f"v{i}.stac.json").read_bytes()


def test_a_transfer_cut_without_its_length_announced_is_a_network_failure(tmp_path, raster_factory):
    """A server that announced no Content-Length and closed the connection in the middle of a TIFF gave exit 2,
    "cannot be read as a raster": the end of the connection looked like the end of the file. The range it answered
    (Content-Range) tells the length: a NetworkError now, exit 1, as when the length was announced; as LR, as a
    /vsicurl?url= path and in a list of band URLs. A file that is itself broken (served whole without its length,
    or local) stays bad input (exit 2)."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    for band in ("B02", "B03"):
        raster_factory(f"www/{band}.tif", (smooth_field(1, 24, 24, 6) * 200 + 20).astype(np.uint8))
    data = (folder / "lr.tif").read_bytes()
    (folder / "tiny.tif").write_bytes(data[:48])  # ends inside its header, short enough to be served whole
    (tmp_path / "broken.tif").write_bytes(data[:100])
    out = ["-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")]
    with serving(folder, "cut-unannounced") as url:
        for args in (["upscale", f"{url}/lr.tif", *out], ["info", f"{url}/lr.tif"],
                     ["info", "/vsicurl?url=" + urllib.parse.quote(f"{url}/lr.tif", safe="")],
                     ["upscale", f"{url}/B02.tif,{url}/B03.tif", *out]):
            res = CliRunner().invoke(app, args)
            said = _said(res)
            assert res.exit_code == 1 and "its server cut the transfer" in said and "try again" in said, (args, said)
            assert "cannot be read as a raster" not in said and "internal error" not in said, (args, said)
        res = CliRunner().invoke(app, ["info", f"{url}/tiny.tif"])
        assert res.exit_code == 2 and "tiny.tif" in _said(res) and "try again" not in _said(res), _said(res)
    res = CliRunner().invoke(app, ["upscale", str(tmp_path / "broken.tif"), *out])
    assert res.exit_code == 2 and "broken.tif" in _said(res) and "try again" not in _said(res), _said(res)
    assert not (tmp_path / "o.tif").exists()


def test_a_cut_is_told_by_the_files_size_when_the_answer_gives_no_length():
    """A server that answers a range with the whole file (200), with no Content-Length nor Content-Range: the
    file's size by a HEAD tells a cut (at most the range asked for is read); a server that tells no size at all
    leaves it untold (None: the file's own fault, as GDAL says)."""
    import http.server
    import threading

    from geosr.io.paths import cut_short

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            if not self.path.startswith("/untold"):
                self.send_header("Content-Length", "100000")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * (100000 if self.path == "/whole" else 64))
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # urllib alone: no GDAL holds the lock
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert cut_short(f"{base}/cut", size=1000) == "its server cut the transfer (64 of 1000 bytes)"
        assert cut_short(f"{base}/whole", size=1000) is None
        assert cut_short(f"{base}/untold", size=1000) is None
    finally:
        server.shutdown()
        server.server_close()


def test_gdal_vsicurl_paths_with_options_are_read_as_their_url(served, tmp_path):
    """GDAL's /vsicurl?OPTIONS&url=URL form (the URL percent-encoded) was taken for a local file: "no such file",
    exit 2. It is a remote input as /vsicurl/URL is: info and upscale read it (the same bytes as from the URL), as
    the LR and as the reference; messages, the failure checks and the job's fingerprint go by the URL inside."""
    from geosr.pipeline import job as job_module

    url, folder = served
    plain = f"{url}/lr.tif"

    def gdal(u: str) -> str:
        return "/vsicurl?max_retry=1&url=" + urllib.parse.quote(u, safe="")

    res = CliRunner().invoke(app, ["info", gdal(plain)])
    assert res.exit_code == 0 and "24 x 24 px" in _said(res), _said(res)
    outs = {}
    for lr in (plain, gdal(plain)):
        outs[lr] = tmp_path / f"o{len(outs)}.tif"
        res = CliRunner().invoke(app, ["upscale", lr, "-x", "2", "-m", "bicubic", "-o", str(outs[lr])])
        assert res.exit_code == 0, res.output
    assert outs[plain].read_bytes() == outs[gdal(plain)].read_bytes()
    for i, ref in enumerate((plain, gdal(plain))):
        res = CliRunner().invoke(app, ["upscale", plain, "--ref", ref, "--cd", "none", "-m", "reference-paste", "-x",
                                       "2", "-o", str(tmp_path / f"r{i}.tif")])
        assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "r0.tif") as a, rasterio.open(tmp_path / "r1.tif") as b:
        assert np.array_equal(a.read(), b.read())
    job_module._REMOTE_STATS.clear()
    stat = job_module._file_id(gdal(plain))
    assert stat[0] == gdal(plain) and f"size={(folder / 'lr.tif').stat().st_size}" in stat[1:], stat
    res = CliRunner().invoke(app, ["info", gdal(f"{url}/nothing.tif")])
    assert res.exit_code == 2 and f"{url}/nothing.tif" in _said(res) and "%2F" not in _said(res), _said(res)
    res = CliRunner().invoke(app, ["upscale", gdal("http://127.0.0.1:9/lr.tif"), "-x", "2", "-o",
                                   str(tmp_path / "n.tif")])
    said = _said(res)
    assert res.exit_code == 1 and "http://127.0.0.1:9/lr.tif: cannot be read now: no answer" in said, said
    assert not (tmp_path / "n.tif").exists()

    from geosr.io.paths import curl_url, is_remote, named, over_network

    assert curl_url(gdal(plain)) == plain == named(gdal(plain)) and curl_url(f"/vsicurl/{plain}") == plain
    assert is_remote(gdal(plain)) and over_network(gdal(plain)) and named(f"/vsicurl/{plain}") == f"/vsicurl/{plain}"
    assert curl_url("/vsicurl?url=https%3A%2F%2Fh%2Fa%20b.tif%3Fsig%3D1%262&max_retry=3") == "https://h/a b.tif?sig=1&2"


def _said(res) -> str:
    return " ".join(res.output.split())


def test_a_stac_item_or_band_list_whose_server_fails_is_a_network_failure(tmp_path):
    """A STAC item URL (with or without a suffix) answered 503, its assets answered 503, band URLs answered 503, a
    redirect to a 503 and a refused connection gave exit 2 ("cannot be fetched", "cannot be read"): bad input, never
    retried by geosr batch. They are the server's or the network's failure: exit 1, "try again"; a 404 stays bad
    input."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder)
    item_over_band_files(folder)
    (folder / "item").write_bytes((folder / "item.json").read_bytes())
    bands = ",".join(f.name for f in sorted(folder.glob("*_B0[234]_*.tif")))
    out = ["-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")]
    with serving(folder, "0") as down, serving(folder, "1") as assets_down, serving(folder, "moved") as moved:
        for args in (["upscale", f"{down}/item.json", *out], ["upscale", f"{down}/item", *out],
                     ["info", f"{down}/item.json"], ["upscale", f"{assets_down}/item.json", *out],
                     ["upscale", ",".join(f"{down}/{b}" for b in bands.split(",")), *out],
                     ["detect-changes", f"{down}/item.json", "--ref", str(folder / "visual.tif"), "-o",
                      str(tmp_path / "c.tif")],
                     ["upscale", f"{moved}/item.json", *out], ["upscale", f"{moved}/visual.tif", *out]):
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 1 and "answered HTTP 503; try again" in _said(res), (args, _said(res))
            assert "127.0.0.1" in _said(res) and "internal error" not in _said(res)
    res = CliRunner().invoke(app, ["info", "http://127.0.0.1:9/items/abc"])
    assert res.exit_code == 1 and "no answer from its server" in _said(res) and "try again" in _said(res), _said(res)
    with serving(folder) as up:
        res = CliRunner().invoke(app, ["info", f"{up}/missing.json"])
        assert res.exit_code == 2 and "missing.json" in _said(res), _said(res)
    assert not list(tmp_path.glob("*.tif"))


def test_a_stac_item_whose_server_never_answers_times_out_as_a_network_failure(tmp_path, monkeypatch):
    import socket

    import geosr.io.stac_items as stac_items

    monkeypatch.setattr(stac_items, "STAC_TIMEOUT_S", 1)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        res = CliRunner().invoke(app, ["info", f"http://127.0.0.1:{silent.getsockname()[1]}/item.json"])
    assert res.exit_code == 1 and "no answer from its server" in _said(res) and "try again" in _said(res), _said(res)


def test_server_faults_are_told_from_bad_answers():
    """The HTTP statuses worth a retry (5xx, 408, 429) from those that are the input's (404, 403)."""
    import http.client
    import urllib.error

    from geosr.io.paths import fetch_failure

    for code in (500, 502, 503, 408, 429):
        assert fetch_failure(urllib.error.HTTPError("u", code, "x", None, None)) == f"its server answered HTTP {code}"
    for code in (404, 403, 400):
        assert fetch_failure(urllib.error.HTTPError("u", code, "x", None, None)) is None
    assert "cut the transfer" in (fetch_failure(http.client.IncompleteRead(b"ab", 10)) or "")
    assert "no answer" in (fetch_failure(urllib.error.URLError(ConnectionRefusedError())) or "")
    assert "no answer" in (fetch_failure(TimeoutError("timed out")) or "")


def test_a_stac_item_cut_by_its_server_is_a_network_failure_and_a_truncated_one_bad_input(tmp_path):
    """An item JSON whose transfer the server cut gave "internal error: IncompleteRead" (length announced) or "is
    not JSON" (exit 2; length not announced): one NetworkError sentence now, exit 1. A file that is itself cut short,
    served whole with its length, stays bad input."""
    from tests.s2_products import band_files, item_over_band_files

    folder = tmp_path / "www"
    band_files(folder)
    text = item_over_band_files(folder).read_text()
    (folder / "short.json").write_text(text[: len(text) // 2])
    for mode in ("cut", "cut-unannounced"):
        with serving(folder, mode) as url:
            res = CliRunner().invoke(app, ["info", f"{url}/item.json"])
        said = _said(res)
        assert res.exit_code == 1 and "its server cut the transfer" in said and "try again" in said, (mode, said)
        assert "internal error" not in said and "not JSON" not in said
    with serving(folder) as url:
        res = CliRunner().invoke(app, ["info", f"{url}/short.json"])
    assert res.exit_code == 2 and "short.json: is not JSON" in _said(res), _said(res)


@pytest.fixture
def big_served(tmp_path):
    """A 2048 x 2048 tiled raster (read in many requests) served by a server that answers 503 after two GETs."""
    from affine import Affine

    folder = tmp_path / "www"
    folder.mkdir()
    a = (np.random.default_rng(0).random((3, 2048, 2048)) * 255).astype(np.uint8)
    with rasterio.open(folder / "big.tif", "w", driver="GTiff", width=2048, height=2048, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5000000), tiled=True,
                       blockxsize=256, blockysize=256) as ds:
        ds.write(a)
    with serving(folder, "2") as url:
        yield url, folder


def _vrt(path, source: str) -> str:
    bands = "".join(f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">'
                    f'{source}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
                    for b in (1, 2, 3))
    path.write_text('<VRTDataset rasterXSize="2048" rasterYSize="2048"><SRS>EPSG:32633</SRS><GeoTransform>500000, '
                    f'10, 0, 5000000, 0, -10</GeoTransform>{bands}</VRTDataset>')
    return str(path)


def test_a_local_stac_item_or_vrt_whose_remote_member_fails_mid_read_is_a_network_failure(tmp_path, big_served):
    """A local STAC item or VRT reading a URL that failed mid-read was "may be corrupt", exit 2 (the local file was
    taken for the broken one, and geosr batch never retried): a NetworkError naming the band file, exit 1. A VRT
    whose remote member does not exist (404) stays bad input."""
    big_served, folder = big_served
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "x", "geometry": None, "links": [],
            "properties": {"datetime": "2023-06-12T10:10:31Z"},
            "assets": {"rgb": {"href": f"{big_served}/big.tif", "type": "image/tiff", "roles": ["data"],
                               "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")]}}}
    (tmp_path / "item.json").write_text(json.dumps(item))
    for lr in (str(tmp_path / "item.json"), _vrt(tmp_path / "scene.vrt", f"/vsicurl/{big_served}/big.tif")):
        res = CliRunner().invoke(app, ["upscale", lr, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif"),
                                       "--force-resources"])
        said = _said(res)
        assert res.exit_code == 1 and f"its band file {big_served}/big.tif" in said and "try again" in said, said
        assert "corrupt" not in said and not (tmp_path / "o.tif").exists()
    with serving(folder) as up:
        res = CliRunner().invoke(app, ["upscale", _vrt(tmp_path / "gone.vrt", f"/vsicurl/{up}/gone.tif"), "-x", "2",
                                       "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 2 and "gone.vrt" in _said(res), _said(res)


def test_batch_retries_a_stac_item_whose_server_fails_and_fails_it_as_a_network_error(tmp_path, monkeypatch):
    """geosr batch took a STAC item URL answered 503 for an invalid job (exit 2, "nothing was run"): it is checked
    again, then fails as a NetworkError (worth a new run)."""
    from tests.s2_products import band_files, item_over_band_files

    import geosr.pipeline.batch.plan as plan

    monkeypatch.setattr(plan, "CHECK_RETRY_DELAYS", (0.1,))
    folder = tmp_path / "www"
    band_files(folder)
    item_over_band_files(folder)
    with serving(folder, "0") as down:
        (tmp_path / "jobs.yaml").write_text(f"jobs:\n  - {{lr: {down}/item.json, out: far.tif, x: 2, "
                                            "model: bicubic}\n")
        res = CliRunner().invoke(app, ["batch", str(tmp_path / "jobs.yaml"), "--workers", "1", "--dashboard", "none",
                                       "--json"])
    assert res.exit_code == 1, res.output
    job = json.loads(res.stdout)["jobs"][0]
    assert job["status"] == "failed" and job["error_type"] == "NetworkError" and "HTTP 503" in job["error"], job


def test_a_server_without_range_requests_is_named_as_such(tmp_path, raster_factory):
    """It read `cannot be read as a raster (Range downloading not supported by this server!)`, as if the file were
    at fault."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/big.tif", np.random.default_rng(0).integers(0, 255, (3, 1024, 1024)).astype(np.uint8))
    with serving(folder, "no-range") as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/big.tif", "-x", "2", "-m", "bicubic",
                                       "-o", str(tmp_path / "a.tif")])
    assert res.exit_code == 2, res.output
    assert _said(res) == (f"geosr: error: {url}/big.tif: its server does not answer range requests (HTTP Range), "
                          "which reading a raster over the network needs; download it and give the local file")
    assert not (tmp_path / "a.tif").exists()


def test_a_server_failing_while_the_overviews_directories_are_read_is_a_network_failure(tmp_path):
    """A server that stopped answering after the first request, while GDAL read a COG's later directories (its
    overviews), gave "internal error: CPLE_AppDefinedError: TIFFReadDirectory...", exit 1, naming no file."""
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    folder = tmp_path / "www"
    folder.mkdir()
    data = (np.random.default_rng(0).random((3, 512, 512)) * 255).astype(np.uint8)
    with rasterio.open(folder / "ov.tif", "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 6000000, 10, 10), tiled=True, blockxsize=256,
                       blockysize=256) as ds:
        ds.write(data)
    with rasterio.open(folder / "ov.tif", "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)  # their directories at the end of the file
    with serving(folder, "1") as url:
        for args in (["info", f"{url}/ov.tif"], ["upscale", f"{url}/ov.tif", "-x", "2", "-m", "bicubic", "-o",
                                                  str(tmp_path / "o.tif")]):
            res = CliRunner().invoke(app, args)
            said = " ".join(res.output.split())
            assert res.exit_code == 1 and "internal error" not in said, said
            assert f"{url}/ov.tif: cannot be read now: its server answered HTTP 503; try again" in said, said
    assert not (tmp_path / "o.tif").exists()


def test_geosr_s_own_stac_item_with_a_spaced_name_reads_by_url(tmp_path, raster_factory):
    """An item by URL whose asset href holds a literal space (geosr writes `sr %231 a.tif`, encoding only %, # and
    ?) gave "internal error: InvalidURL: URL can't contain control characters"."""
    folder = tmp_path / "www"
    folder.mkdir()
    lr = raster_factory("lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    res = CliRunner().invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", str(folder / "sr #1 a.tif")])
    assert res.exit_code == 0, res.output
    with serving(folder) as url:
        res = CliRunner().invoke(app, ["info", f"{url}/sr%20%231%20a.stac.json", "--json"])
        assert res.exit_code == 0 and "internal error" not in res.output, res.output
        assert json.loads(res.stdout)["files"][0]["width"] == 48


def test_an_output_given_as_a_url_is_refused_as_such(tmp_path, raster_factory):
    """`-o http://host/out.tif` said "http:/host/out.tif: the output folder http:/host does not exist"."""
    lr = raster_factory("lr.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    res = CliRunner().invoke(app, ["upscale", str(lr), "-x", "2", "-m", "bicubic", "-o", "http://127.0.0.1:9/o.tif"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "http://127.0.0.1:9/o.tif: is a URL; outputs are written to local paths" in said, said
    assert not list(tmp_path.glob("http*"))


def test_a_signed_url_s_query_is_not_written_into_the_output(tmp_path, raster_factory):
    """`GEOSR_INPUTS` read `{"lr": "s2.tif?sig=secret&b=c"}` and the STAC item linked the signed URL: an output
    shared carried the signature."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/s2.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    out = tmp_path / "q.tif"
    with serving(folder) as url:
        res = CliRunner().invoke(app, ["upscale", f"{url}/s2.tif?sig=secret&b=c", "-x", "2", "-m", "bicubic", "-o",
                                       str(out)])
        assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert json.loads(ds.tags()["GEOSR_INPUTS"])["lr"] == "s2.tif"
    item = (tmp_path / "q.stac.json").read_text()
    assert "secret" not in item and f"{url}/s2.tif" in item


def test_a_url_s_user_name_and_password_are_not_written_into_the_output(tmp_path, raster_factory):
    """`http://user:secret@host/...` was linked as such by the STAC item, and `GEOSR_OPTIONS` recorded the ref's URL
    with its password (found in review): an output shared carried the credentials."""
    folder = tmp_path / "www"
    folder.mkdir()
    raster_factory("www/s2.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    raster_factory("www/ref.tif", (smooth_field(3, 48, 48, 6) * 200 + 20).astype(np.uint8),
                   transform=Affine(5, 0, 500000, 0, -5, 5000000))
    out = tmp_path / "q.tif"
    with serving(folder) as url:
        signed = url.replace("http://", "http://user:secret@")
        res = CliRunner().invoke(app, ["upscale", f"{signed}/s2.tif", "--ref", f"/vsicurl/{signed}/ref.tif", "--cd",
                                       "none", "-x", "2", "-m", "reference-paste", "-o", str(out)])
        assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert json.loads(ds.tags()["GEOSR_OPTIONS"])["ref"] == f"/vsicurl/{url}/ref.tif"
        assert "secret" not in json.dumps(ds.tags())
    item = (tmp_path / "q.stac.json").read_text()
    assert "secret" not in item and f"{url}/s2.tif" in item and f"{url}/ref.tif" in item
    from geosr.io.paths import without_credentials  # GDAL's chained prefixes, with one slash or two

    for chained in ("/vsizip/vsicurl/", "/vsizip//vsicurl/"):
        assert without_credentials(f"{chained}http://u:p@h:1/a.zip/b.tif") == f"{chained}http://h:1/a.zip/b.tif"


def test_an_input_through_a_linked_folder_is_linked_from_the_item_as_written(tmp_path, raster_factory,
                                                                              monkeypatch):
    """The STAC item linked `proj/s2.tif` (proj a link to real/proj) as "../../../proj/s2.tif" from proj/out/: the
    item's folder was resolved and the input not (found in review)."""
    (tmp_path / "real" / "proj" / "out").mkdir(parents=True)
    (tmp_path / "proj").symlink_to(tmp_path / "real" / "proj")
    lr = raster_factory("real/proj/s2.tif", (smooth_field(3, 24, 24, 5) * 200 + 20).astype(np.uint8))
    res = CliRunner().invoke(app, ["upscale", str(tmp_path / "proj" / lr.name), "-x", "2", "-m", "bicubic", "-o",
                                   str(tmp_path / "proj" / "out" / "sr.tif")])
    assert res.exit_code == 0, res.output
    item = json.loads((tmp_path / "proj" / "out" / "sr.stac.json").read_text())
    assert [link["href"] for link in item["links"] if link["rel"] == "derived_from"] == ["../s2.tif"]
    # a relative input (read from the working folder's physical path) and the output through the link: its ".."
    # crossed the link ("../../real/proj/s2.tif", no file from the item's folder; found in review)
    monkeypatch.chdir(tmp_path / "proj")
    res = CliRunner().invoke(app, ["upscale", lr.name, "-x", "2", "-m", "bicubic", "-o",
                                   str(tmp_path / "proj" / "out" / "sr2.tif")])
    assert res.exit_code == 0, res.output
    item = json.loads((tmp_path / "proj" / "out" / "sr2.stac.json").read_text())
    href = next(link["href"] for link in item["links"] if link["rel"] == "derived_from")
    assert (tmp_path / "proj" / "out" / href).resolve() == lr.resolve(), href


def test_a_zip_archive_by_url_is_named_as_such(tmp_path):
    """A Sentinel-2 product's zip by URL said "has no coordinate reference system" (GDAL opened a file inside)."""
    folder = tmp_path / "www"
    folder.mkdir()
    with zipfile.ZipFile(folder / "S2B_MSIL2A_x.zip", "w") as z:
        z.writestr("x.SAFE/MTD_MSIL2A.xml", "<x/>")
    with serving(folder) as url:
        for path in (f"{url}/S2B_MSIL2A_x.zip?token=t", f"/vsicurl/{url}/S2B_MSIL2A_x.zip"):  # the latter said
            res = CliRunner().invoke(app, ["info", path])  # "holds no pixels" (found by review)
            said = " ".join(res.output.split())
            assert res.exit_code == 2 and "is a .zip archive over the network" in said, said
            assert "download it first" in said, said


def test_a_url_without_a_suffix_that_cannot_be_fetched_is_not_called_a_stac_item(tmp_path):
    """A suffixless URL redirecting to itself: "the STAC item cannot be fetched (... infinite loop.\\nThe last 30x
    error message was:\\nFound)": a guess (it may be a raster) and three lines. Now one line, no guess."""
    import http.server
    import threading

    class Loop(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/loop"
        res = CliRunner().invoke(app, ["upscale", url, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif"),
                                       "--json"])
        error = json.loads(res.output)["error"]
        assert res.exit_code == 2 and error.startswith(f"{url}: it cannot be fetched (") and "\n" not in error, error
        assert "STAC" not in error and "infinite loop" in error
    finally:
        server.shutdown()
        server.server_close()
    assert not list(tmp_path.iterdir())


def test_recorded_options_keep_no_query_of_any_url_form():
    """A list of URLs written with spaces after its commas kept the later URLs' queries, and GDAL's
    /vsicurl?OPTIONS&url=URL form was recorded as a bare "/vsicurl" (its URL lost, while its query is a token's)."""
    from geosr.io.paths import recorded_options

    given = {"ref": "https://h/a.tif?tok=1, https://h/b.tif?tok=2",
             "cd": "/vsicurl?max_retry=3&url=https%3A%2F%2Fh%2Fc.tif%3Ftok%3D3", "map": "plain?name.tif",
             "scale": 4}
    from geosr.options import UpscaleOptions

    assert json.loads(recorded_options(json.dumps(given), UpscaleOptions.paths)) == {
        "ref": "https://h/a.tif,https://h/b.tif", "cd": "https://h/c.tif", "map": "plain?name.tif", "scale": 4}


def test_recorded_options_name_local_files_by_their_names_only():
    """Found by review: GEOSR_OPTIONS (and detect-changes' GEOSR_CHANGE_DETECTION) held local paths as typed: an
    output shared carried its author's home folder, and its bytes changed with a path spelled relative or absolute.
    Local files are recorded by name, as GEOSR_INPUTS has them; keywords, boxes and CRSs as given."""
    from pyproj import CRS

    from geosr.io.paths import recorded_options
    from geosr.options import UpscaleOptions

    wkt = CRS.from_epsg(32633).to_wkt()  # "WGS 84 / UTM zone 33N": a "/" in no path (it was cut to " UTM zone 33N...")
    given = {"ref": "/home/me/data/ref.tif", "cd": "auto", "map": "sub/map.tif", "aoi": "13.3,52.5,13.4,52.6",
             "aoi_crs": wkt, "model": "/home/me/runs/my model.safetensors+lite",
             "style": "/vsizip//home/me/a.zip/dir/s.tif", "cd_classes": "GPKG:/home/me/x.gpkg:roads",
             "bands": "red/nir", "other": "/vsis3/bucket/key/r.tif?token=1", "scale": 4, "ref_bands": "3, 2, 1"}
    paths = UpscaleOptions.paths
    assert json.loads(recorded_options(json.dumps(given), paths)) == {
        "ref": "ref.tif", "cd": "auto", "map": "map.tif", "aoi": "13.3,52.5,13.4,52.6", "aoi_crs": wkt,
        "model": "my model.safetensors+lite", "style": "s.tif", "cd_classes": "GPKG:x.gpkg:roads", "bands": "red/nir",
        "other": "/vsis3/bucket/key/r.tif", "scale": 4, "ref_bands": "3,2,1"}
    assert json.loads(recorded_options(json.dumps({"ref": "/home/me/b4.tif,/home/me/b3.tif"}), paths)) == {
        "ref": "b4.tif,b3.tif"}


def test_a_list_of_urls_written_with_spaces_is_read(tmp_path, raster_factory):
    """`"URL1?tok, URL2?tok"` (as a shell user writes a list) stopped with an internal error (exit 1): the whole
    list was asked for as one URL, which the HTTP library refused, spaces and all."""
    folder = tmp_path / "www"
    folder.mkdir()
    for i in range(3):
        raster_factory(f"www/b{i}.tif", (smooth_field(1, 24, 24, i) * 200 + 20).astype(np.uint8))
    with serving(folder) as url:
        listed = ", ".join(f"{url}/b{i}.tif?tok=SECRETTOKEN" for i in range(3))
        res = CliRunner().invoke(app, ["upscale", listed, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.count == 3 and "SECRETTOKEN" not in json.dumps(ds.tags())


def test_a_server_answering_outside_http_is_no_answer():
    """A reply that is not HTTP (a bad status line) escaped the HEAD that identifies a remote input, as an
    internal error: it is no answer, as a refused connection is."""
    import socket
    import threading

    from geosr.io.paths import http_head

    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        status, headers, why = http_head(f"http://127.0.0.1:{server.getsockname()[1]}/a.tif", timeout=5)
    finally:
        thread.join(5)
        server.close()
    assert status is None and not headers and why


def test_a_stalled_server_is_asked_once_when_a_read_fails(monkeypatch):
    """When a read over the network failed, each band file of a VRT was asked for its size (to tell a file cut
    short) and then again for a network failure, each waiting the full timeout on a server that accepts and never
    answers: 50 s for 4 band files. The first that does not answer is the network failure named, and the only one
    asked."""
    import socket
    import threading

    from rasterio.errors import RasterioIOError

    from geosr.errors import NetworkError
    from geosr.io import rasters

    monkeypatch.setattr(rasters, "CUT_SHORT_PROBE_TIMEOUT", 0.5)
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(server.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    base = f"http://127.0.0.1:{server.getsockname()[1]}"
    vrt = "<VRTDataset>" + "".join(
        f"<VRTRasterBand><SimpleSource><SourceFilename>/vsicurl/{base}/b{i}.tif</SourceFilename></SimpleSource>"
        "</VRTRasterBand>" for i in range(4)) + "</VRTDataset>"
    try:
        with pytest.raises(NetworkError) as err, rasters.reading(vrt):
            raise RasterioIOError("Read failed")
        assert f"its band file {base}/b0.tif: no answer from its server" in str(err.value)
        assert len(accepted) == 1
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_a_geotiff_whose_appended_overviews_are_cut_short_is_told(tmp_path):
    """A plain GeoTIFF keeps the overviews added to it after its pixels: cut there, it was not told as cut short
    (only the full-resolution blocks were looked at), so the failed read was a network failure to retry."""
    from rasterio.enums import Resampling

    from geosr.io.rasters import cut_short_file

    path = tmp_path / "a.tif"
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", width=600, height=500, count=2, dtype="uint8", tiled=True,
                       blockxsize=256, blockysize=256, crs="EPSG:32633",
                       transform=rasterio.Affine(10, 0, 500000, 0, -10, 5000000)) as ds:
        ds.write(rng.integers(0, 255, (2, 500, 600), dtype=np.uint8))
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
        first_overview = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1, ovr=0))
    whole = path.stat().st_size
    assert cut_short_file(str(path), whole) is None
    kept = (first_overview + whole) // 2  # every full-resolution block whole, the overviews cut
    path.write_bytes(path.read_bytes()[:kept])
    assert cut_short_file(str(path), kept) == f"its pixels run to byte {whole:,} but its server holds {kept:,} bytes"


def test_no_password_of_a_url_goes_into_a_batch_s_record_or_results(served):
    """A URL's user:password@ went into the record beside a batch's output (its fingerprint) and into the results
    manifest (the LR, the error naming it; found in review), where the STAC item and the tags had none."""
    from geosr.pipeline.batch.results import JobResult
    from geosr.pipeline.job import plan_upscale

    url, _ = served
    signed_in = url.replace("http://", "http://u:pw@")
    with plan_upscale(f"{signed_in}/lr.tif", output=None, scale=2, model="bicubic", dry_run=True) as job:
        assert "pw" not in json.dumps(job.fingerprint) and job.fingerprint["inputs"][0][0] == f"{url}/lr.tif"
    line = JobResult("a", "failed", "o.tif", lr=f"{signed_in}/lr.tif,https://x:y@h/b.tif",
                     error=f"{signed_in}/lr.tif: no such file on its server (HTTP 404)",
                     warnings=[f"{signed_in}/cd.tif: its nodata value 0 is the class 'unchanged'"]).to_dict()
    assert line["lr"] == f"{url}/lr.tif,https://h/b.tif" and line["error"].startswith(f"{url}/lr.tif: no such")
    assert line["warnings"] == [f"{url}/cd.tif: its nodata value 0 is the class 'unchanged'"]


def test_credentials_go_to_the_url_s_own_host_only_and_gdal_s_quoted_headers_are_read(monkeypatch):
    """geosr's own requests sent a URL's password (and GDAL_HTTP_HEADERS) on to whatever host a redirect named
    (urllib copies every header; GDAL and curl do not); a quoted GDAL_HTTP_HEADERS entry ("X-Note: a, b") was a
    header named '"X-Note'; a server geosr's request got no answer from (its TLS or proxy not GDAL's) failed the
    run where GDAL read the file (found in review)."""
    import http.server
    import threading

    from geosr.io import paths

    seen: dict[int, list] = {}

    def server(redirect_to: str | None):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                seen.setdefault(self.server.server_port, []).append(
                    (self.headers.get("Authorization"), self.headers.get("X-Api-Key")))
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", "bytes 0-0/10")
                self.send_header("Content-Length", "1")
                self.end_headers()
                self.wfile.write(b"x")

        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        return s

    other = server(None)
    first = server(f"http://localhost:{other.server_port}/a.tif")  # another host: credentials stay behind
    try:
        monkeypatch.setenv("GDAL_HTTP_HEADERS", 'X-Api-Key: k1,"X-Note: a, b",Authorization: "Bearer s3cret"')
        assert paths.gdal_request("http://h/x")[1] == {"X-Api-Key": "k1", "X-Note": "a, b",
                                                        "Authorization": "Bearer s3cret"}
        monkeypatch.setenv("GDAL_HTTP_HEADERS", 'X-Api-Key: k1,"X-Note: a, b"')
        ident = paths.served_identity(f"http://u:pw@127.0.0.1:{first.server_port}/a.tif")
        assert ident == ["size=10"]
        assert seen[first.server_port] == [("Basic dTpwdw==", "k1")]
        assert seen[other.server_port] == [(None, None)]
    finally:
        for s in (first, other):
            s.shutdown()
            s.server_close()
    monkeypatch.setattr(paths, "http_head", lambda *a, **k: (None, {}, "[SSL: CERTIFICATE_VERIFY_FAILED]"))
    assert paths.served_identity("https://127.0.0.1:9/a.tif") == ["unidentified=no answer"]


def test_landsat_level_2_band_files_as_urls_take_the_published_scale(tmp_path):
    """Landsat Collection 2 Level-2 band files given as URLs were read as raw DN (scale 1, offset 0) beside their
    DN-0 fill read as nodata, though their scale needs no metadata file: USGS publishes one for every product
    (found in review; a local folder without its MTL file took it)."""
    from tests.test_product_files import L2SP, _l2sp

    folder = _l2sp(tmp_path / "www")
    (folder / f"{L2SP}_MTL.txt").unlink()
    with serving(tmp_path / "www") as url:
        bands = ",".join(f"{url}/{folder.name}/{L2SP}_SR_B{b}.TIF" for b in (4, 3, 2))
        res = CliRunner().invoke(app, ["upscale", bands, "-x", "2", "-m", "bicubic", "-o", str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as ds:
        assert ds.scales == (2.75e-05,) * 3 and ds.offsets == (-0.2,) * 3 and ds.nodata == 0


def test_a_run_on_local_files_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    """`geosr.upscale(..., ref=...)` on local files left GDAL_HTTP_TIMEOUT (20 s), GDAL_HTTP_CONNECTTIMEOUT and
    GDAL_HTTP_MAX_RETRY (0) set in the caller's process: the detected change mask, in /vsimem/, was taken for a
    URL (found in review). A URL input sets them (where the caller has not)."""
    import os

    from geosr import upscale
    from geosr.io.rasters import REMOTE_OPTIONS
    from geosr.sample_scene import sample_paths

    for key in REMOTE_OPTIONS:
        monkeypatch.delenv(key, raising=False)
    paths = sample_paths()
    upscale(paths["lr"], output=tmp_path / "o.tif", scale=8, ref=paths["ref"], model="reference-paste")
    assert not [k for k in REMOTE_OPTIONS if k in os.environ]
    # a zip on a server, as geosr advises naming a raster in it, is read over the network: with the timeouts (the
    # first version of the above took it for a local path, and a server that never answered hung it for ever)
    from geosr.errors import GeoSRError
    from geosr.io.rasters import open_raster

    with pytest.raises(GeoSRError):
        open_raster("/vsizip/vsicurl/http://127.0.0.1:9/a.zip/b.tif")
    assert all(k in os.environ for k in REMOTE_OPTIONS)


def test_credentials_are_left_out_of_text_to_the_authority_s_last_at_and_nothing_else_is_touched():
    """Every line the command line prints goes through credentials_hidden: a password holding a raw "@" was shown
    from there ("http://ss@host"; found in review), and ordinary text must come out as it went in."""
    from geosr.io.paths import credentials_hidden

    assert credentials_hidden("http://u:p@ss@h:1/a.tif and ftp://me@h/b") == "http://h:1/a.tif and ftp://h/b"
    assert credentials_hidden('"http://u:pw@h/a"') == '"http://h/a"'
    compact = json.dumps({"a": "http://h", "b": "u@x.com"}, separators=(",", ":"))
    for text in (compact, "(http://h) (me@x.org)", "http://h/a@b.tif", "mail me@x.org", "/data/a@b.tif",
                 "http://[::1]:8080/a.tif"):
        assert credentials_hidden(text) == text, text
