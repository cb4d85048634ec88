"""What GDAL itself reads of a raster's class names: band 1's category names and its raster attribute table,
through GDAL's C API (ctypes on the libgdal that rasterio ships; rasterio has no API for either)."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import pytest
import rasterio


def _lib() -> ctypes.CDLL:
    folder = os.path.join(os.path.dirname(rasterio.__file__), os.pardir, "rasterio.libs")
    found = glob.glob(os.path.join(folder, "libgdal*.so*")) or [ctypes.util.find_library("gdal")]
    if not found or found[0] is None:
        pytest.skip("no libgdal to read category names with")
    lib = ctypes.CDLL(found[0])
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (("GDALOpen", vp, [cp, ctypes.c_int]), ("GDALClose", None, [vp]),
                            ("GDALGetProjectionRef", cp, [vp]), ("GDALGetRasterBand", vp, [vp, ctypes.c_int]),
                            ("GDALGetRasterCategoryNames", ctypes.POINTER(cp), [vp]), ("GDALGetDefaultRAT", vp, [vp]),
                            ("GDALRATGetRowCount", ctypes.c_int, [vp]), ("GDALRATGetColumnCount", ctypes.c_int, [vp]),
                            ("GDALRATGetNameOfCol", cp, [vp, ctypes.c_int]),
                            ("GDALRATGetValueAsString", cp, [vp, ctypes.c_int, ctypes.c_int])):
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = args
    lib.GDALAllRegister()
    return lib


def class_names(path) -> tuple[list[str], list[dict[str, str]]]:
    """(category names by value, RAT rows as {column: value}) of band 1 of ``path``, as GDAL reads them."""
    lib = _lib()
    ds = lib.GDALOpen(str(path).encode(), 0)
    assert ds, f"GDAL cannot open {path}"
    try:
        lib.GDALGetProjectionRef(ds)  # GDAL loads a GeoTIFF's auxiliary metadata with its georeferencing
        band = lib.GDALGetRasterBand(ds, 1)
        names, cats = lib.GDALGetRasterCategoryNames(band), []
        while names and names[len(cats)] is not None:
            cats.append(names[len(cats)].decode())
        rat, rows = lib.GDALGetDefaultRAT(band), []
        if rat:
            cols = [lib.GDALRATGetNameOfCol(rat, c).decode() for c in range(lib.GDALRATGetColumnCount(rat))]
            rows = [{c: lib.GDALRATGetValueAsString(rat, r, i).decode() for i, c in enumerate(cols)}
                    for r in range(lib.GDALRATGetRowCount(rat))]
        return cats, rows
    finally:
        lib.GDALClose(ds)
