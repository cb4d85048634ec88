"""Test session guards and a factory of tiny georeferenced rasters."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
    else:
        return isinstance(address, (str, bytes))  # a str/bytes address is an AF_UNIX socket path
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Fail any non-loopback connection made during the tests (osmnx, hubs, DNS-over-HTTPS)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not connect to {address!r}")
        return real_connect(self, address)

    def guarded_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not connect to {address!r}")
        return real_connect_ex(self, address)

    socket.socket.connect = guarded
    socket.socket.connect_ex = guarded_ex
    os.environ.setdefault("GEOSR_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "geosr-test-cache"))
    try:
        import osmnx as ox

        ox.settings.doh_url_template = None
    except ImportError:  # pragma: no cover
        pass
    yield
    socket.socket.connect = real_connect
    socket.socket.connect_ex = real_connect_ex


def pytest_collection_modifyitems(config, items):
    if not SHARED_DATA.is_dir():
        skip = pytest.mark.skip(reason=f"{SHARED_DATA} is absent")
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Torch on one thread for a module: small models on 2 shared cores run far faster so."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def map_model(tmp_path_factory) -> Path:
    """A tiny diffusion checkpoint (random weights, x2 and x8) with a map path of two classes: a model that reads
    ``--map`` (no bundled one does, and a map a model does not use is not read)."""
    import torch

    from geosr.models.checkpoint import make_spec, save_checkpoint
    from geosr.models.edm import build_denoiser

    torch.manual_seed(0)
    model = build_denoiser("tiny", n_map_classes=2, style=False).eval()
    spec = make_spec(model, name="map-test", scales=[2, 8], band_names=["B4", "B3", "B2"],
                     change_classes={"0": "unchanged", "1": "changed"}, normalization={"kind": "robust-stretch"},
                     training={"data": "none", "steps": 0}, metrics={})
    return save_checkpoint(tmp_path_factory.mktemp("map_model") / "map.safetensors", model, spec, sidecar=False)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


def smooth_field(bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random image (sum of a few sinusoids) in [0, 1], deterministic by seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((bands, height, width))
    for b in range(bands):
        for _ in range(4):
            fy, fx = rng.uniform(0.02, 0.4, 2)
            ph = rng.uniform(0, 2 * np.pi)
            out[b] += np.sin(fy * yy + fx * xx + ph)
    out -= out.min()
    return out / max(out.max(), 1e-9)


def make_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | CRS | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = None,
    descriptions: tuple[str, ...] | None = None,
    **profile_extra,
) -> Path:
    """Write ``data`` (bands, h, w) as a GeoTIFF with a chosen grid; defaults to 10 m UTM 33N."""
    if data.ndim == 2:
        data = data[None]
    transform = transform or Affine(10.0, 0, 500000.0, 0, -10.0, 5000000.0)
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        transform=transform,
        nodata=nodata,
    )
    if crs is not None:
        profile["crs"] = CRS.from_user_input(crs) if isinstance(crs, str) else crs
    profile.update(profile_extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or ()):
            dst.set_band_description(i + 1, d)
    return path


@pytest.fixture
def raster_factory(tmp_path):
    """Make tiny rasters: ``raster_factory("name.tif", array, crs=..., transform=..., nodata=...)``."""

    def make(name: str, data: np.ndarray, **kw) -> Path:
        return make_raster(tmp_path / name, data, **kw)

    return make
