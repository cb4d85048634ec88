"""``geosr info``: what each raster holds and how the files overlap."""

from __future__ import annotations

from rasterio.warp import transform_bounds

from geosr.io.rasters import default_bands, inspect_raster


def describe(paths: list[str]) -> dict:
    """Metadata of every raster and, for each pair, the share of the first's area the second covers."""
    infos = [inspect_raster(p, require_crs=False) for p in paths]
    files = []
    for info in infos:
        g = info.grid
        files.append(
            {
                "path": info.path,
                "driver": info.driver,
                "width": g.width,
                "height": g.height,
                "crs": g.crs.to_string() if g.crs else None,
                "res": g.res,
                "bounds": g.bounds,
                "nodata": info.nodata,
                "mask": info.has_mask,
                "default_bands": list(default_bands(info)),
                "bands": [
                    {
                        "index": i + 1,
                        "description": info.descriptions[i],
                        "dtype": info.dtypes[i],
                        "scale": info.scales[i],
                        "offset": info.offsets[i],
                        "colorinterp": info.colorinterp[i],
                    }
                    for i in range(info.count)
                ],
            }
        )
    overlaps = []
    for i, a in enumerate(infos):
        for j, b in enumerate(infos):
            if i == j or a.grid.crs is None or b.grid.crs is None:
                continue
            al, ab, ar, at = a.grid.bounds
            bl, bb, br, bt = transform_bounds(b.grid.crs, a.grid.crs, *b.grid.bounds, densify_pts=21)
            iw, ih = max(0.0, min(ar, br) - max(al, bl)), max(0.0, min(at, bt) - max(ab, bb))
            overlaps.append({"file": a.path, "other": b.path, "covered": iw * ih / ((ar - al) * (at - ab))})
    return {"files": files, "overlaps": overlaps}
