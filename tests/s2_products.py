"""Small Sentinel-2 products in the layouts ESA ships (built in the tests: no real product is committed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

TILE = "T33UUB"
SENSING = "20230612T101031"
# DN of a product with processing baseline 04.00 or later: reflectance * 10000 + 1000 (BOA_ADD_OFFSET -1000)
BANDS_10M = ("B02", "B03", "B04", "B08")


def scene(width: int = 48, height: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Reflectance per 10 m band: smooth fields and some edges, with a corner of nodata (DN 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    out = {}
    for i, b in enumerate(BANDS_10M):
        r = 0.05 + 0.04 * i + 0.1 * np.sin(6 * xx + i) * np.cos(4 * yy) + 0.01 * rng.standard_normal((height, width))
        r[(xx > 0.5) & (yy > 0.5)] += 0.15
        out[b] = np.clip(r, 0.0, 1.0)
    return out


def _write(path: Path, data: np.ndarray, res: float, driver: str = "JP2OpenJPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = dict(QUALITY="100", REVERSIBLE="YES") if driver == "JP2OpenJPEG" else {}
    with rasterio.open(path, "w", driver=driver, width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(300000.0, 5600040.0, res, res),
                       **kw) as dst:
        dst.write(data, 1)


def l2a_product(root: Path, *, baseline: str = "05.09", offset: int | None = -1000, width: int = 48,
                height: int = 40, scl: np.ndarray | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """A single-granule L2A ``.SAFE`` folder: the 10 m bands, a 20 m band, TCI, and MTD_MSIL2A.xml with the
    quantification value, the BOA offsets (``offset`` None: a product before baseline 04.00, without them), and
    with ``scl`` ((height / 2, width / 2) uint8 classes) the scene classification at 20 m.
    Returns the folder and the reflectance each 10 m band stores."""
    name = f"S2B_MSIL2A_{SENSING}_N{baseline.replace('.', '')}_R022_{TILE}_{SENSING}.SAFE"
    safe = root / name
    granule = f"L2A_{TILE}_A032500_{SENSING}"
    refl = scene(width, height)
    add = 0 if offset is None else -offset
    images = []
    for b in BANDS_10M:
        dn = np.round(refl[b] * 10000 + add).astype(np.uint16)
        dn[:3, :4] = 0  # nodata
        rel = f"GRANULE/{granule}/IMG_DATA/R10m/{TILE}_{SENSING}_{b}_10m"
        _write(safe / f"{rel}.jp2", dn, 10.0)
        images.append(rel)
    rel = f"GRANULE/{granule}/IMG_DATA/R20m/{TILE}_{SENSING}_B05_20m"
    _write(safe / f"{rel}.jp2", np.full((height // 2, width // 2), 1500, np.uint16), 20.0)
    images.append(rel)
    if scl is not None:
        rel = f"GRANULE/{granule}/IMG_DATA/R20m/{TILE}_{SENSING}_SCL_20m"
        _write(safe / f"{rel}.jp2", scl.astype(np.uint16), 20.0)
        images.append(rel)
    rel = f"GRANULE/{granule}/IMG_DATA/R10m/{TILE}_{SENSING}_TCI_10m"
    _write(safe / f"{rel}.jp2", np.full((height, width), 90, np.uint16), 10.0)
    images.append(rel)
    physical = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    spectral = "\n".join(f'        <Spectral_Information bandId="{i}" physicalBand="{p}"/>'
                         for i, p in enumerate(physical))
    offsets = "" if offset is None else (
        "      <BOA_ADD_OFFSET_VALUES_LIST>\n"
        + "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13))
        + "\n      </BOA_ADD_OFFSET_VALUES_LIST>")
    files = "\n".join(f"              <IMAGE_FILE>{r}</IMAGE_FILE>" for r in images)
    (safe / "MTD_MSIL2A.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2023-06-12T10:10:31.024Z</PRODUCT_START_TIME>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="S2B_OPER_MSI_L2A_DS_2BPS_{SENSING}_S{SENSING}_N{baseline}"
                   granuleIdentifier="S2B_OPER_MSI_L2A_TL_2BPS_{SENSING}_A032500_{TILE}_N{baseline}"
                   imageFormat="JPEG2000">
{files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
{offsets}
      <Spectral_Information_List>
{spectral}
      </Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
""", encoding="utf-8")
    return safe, refl


def l1c_product(root: Path, *, offset: int = -1000, classi: np.ndarray | None = None, baseline: str = "05.10",
                gml: str | None = None, gml_name: str = "MSK_CLOUDS_B00.gml") -> tuple[Path, dict[str, np.ndarray]]:
    """A single-granule L1C ``.SAFE`` folder (MTD_MSIL1C.xml: QUANTIFICATION_VALUE, RADIO_ADD_OFFSET, no
    Spectral_Information list: band_ids in ESA's order) with its 10 m bands and, with ``classi`` ((3, h, w) uint8 at
    60 m: opaque clouds, cirrus, snow), its QI_DATA/MSK_CLASSI_B00.jp2, with ``gml`` (:func:`msk_clouds_gml`) its
    QI_DATA/``gml_name``; returns it and the reflectance."""
    safe = root / f"S2A_MSIL1C_{SENSING}_N{baseline.replace('.', '')}_R022_{TILE}_{SENSING}.SAFE"
    granule = f"L1C_{TILE}_A041000_{SENSING}"
    refl = scene(seed=1)
    images = []
    for b in BANDS_10M:
        rel = f"GRANULE/{granule}/IMG_DATA/{TILE}_{SENSING}_{b}"
        _write(safe / f"{rel}.jp2", np.round(refl[b] * 10000 - offset).astype(np.uint16), 10.0)
        images.append(rel)
    if classi is not None:
        path = safe / f"GRANULE/{granule}/QI_DATA/MSK_CLASSI_B00.jp2"
        path.parent.mkdir(parents=True)
        with rasterio.open(path, "w", driver="JP2OpenJPEG", width=classi.shape[2], height=classi.shape[1], count=3,
                           dtype="uint8", crs="EPSG:32633", transform=from_origin(300000.0, 5600040.0, 60.0, 60.0),
                           QUALITY="100", REVERSIBLE="YES") as dst:
            dst.write(classi.astype(np.uint8))
    if gml is not None:
        path = safe / f"GRANULE/{granule}/QI_DATA/{gml_name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(gml, encoding="utf-8")
    files = "\n".join(f"<IMAGE_FILE>{r}</IMAGE_FILE>" for r in images)
    offsets = "\n".join(f'<RADIO_ADD_OFFSET band_id="{i}">{offset}</RADIO_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL1C.xml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info><Product_Info><PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    <Product_Organisation><Granule_List><Granule imageFormat="JPEG2000">{files}</Granule></Granule_List>
    </Product_Organisation></Product_Info>
  <Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
    <Radiometric_Offset_List>{offsets}</Radiometric_Offset_List></Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
""", encoding="utf-8")
    return safe, refl


def msk_clouds_gml(polygons: list[tuple[str, list[list[tuple[float, float]]]]], epsg: int = 32633) -> str:
    """An L1C product's MSK_CLOUDS_B00.gml (before processing baseline 04.00) as ESA writes it: one MaskFeature per
    (mask type, rings: the exterior and its holes, map coordinates); none: a mask without members."""
    def ring(points: list[tuple[float, float]]) -> str:
        pos = " ".join(f"{x:g} {y:g}" for x, y in [*points, points[0]])
        return f"<gml:LinearRing><gml:posList srsDimension=\"2\">{pos}</gml:posList></gml:LinearRing>"

    features = "".join(
        f'<eop:MaskFeature gml:id="{kind}.{i}"><eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">{kind}</eop:maskType>'
        f'<eop:extentOf><gml:Polygon gml:id="{kind}.{i}_Polygon"><gml:exterior>{ring(rings[0])}</gml:exterior>'
        + "".join(f"<gml:interior>{ring(r)}</gml:interior>" for r in rings[1:])
        + "</gml:Polygon></eop:extentOf></eop:MaskFeature>"
        for i, (kind, rings) in enumerate(polygons))
    bounded = (f'<gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG:8.7:{epsg}"><gml:lowerCorner>300000 '
               '5490240</gml:lowerCorner><gml:upperCorner>409800 5600040</gml:upperCorner></gml:Envelope>'
               '</gml:boundedBy>')
    members = f"<eop:maskMembers>{features}</eop:maskMembers>" if features else "<eop:maskMembers/>"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" '
            'xmlns:gml="http://www.opengis.net/gml/3.2" gml:id="MSK_CLOUDS_B00">'
            f'<gml:name>MSK_CLOUDS pixels mask</gml:name>{bounded if features else ""}{members}</eop:Mask>\n')


def band_files(folder: Path, *, driver: str = "GTiff") -> dict[str, np.ndarray]:
    """Per-band GeoTIFFs (DN = reflectance * 10000) named like a product's, plus a 20 m band; returns the DN."""
    refl = scene()
    out = {}
    for b in BANDS_10M:
        out[b] = np.round(refl[b] * 10000).astype(np.uint16)
        _write(folder / f"{TILE}_{SENSING}_{b}_10m.tif", out[b], 10.0, driver)
    _write(folder / f"{TILE}_{SENSING}_B05_20m.tif", np.full((20, 24), 1500, np.uint16), 20.0, driver)
    return out


def item_over_band_files(folder: Path, href: str = "") -> Path:
    """A STAC item over the band files of ``folder``: B02, B03, B04, B08 at 10 m, B05 at 20 m, a 3-band visual
    rendering (not data) and a thumbnail; hrefs relative to the item."""
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge"}
    assets = {}
    for f in sorted(folder.glob("*.tif")):
        b = f.name.split("_")[2]
        assets[b] = {"href": href + f.name, "type": "image/tiff; application=geotiff", "roles": ["data"],
                     "eo:bands": [{"name": b, "common_name": common[b]}],
                     "raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": 0.0}]}
    visual = folder / "visual.tif"
    shutil.copy(next(folder.glob("*_B08_*.tif")), visual)
    assets["visual"] = {"href": href + "visual.tif", "type": "image/tiff", "roles": ["visual"],
                        "eo:bands": [{"name": "B04", "common_name": "red"}]}
    assets["thumbnail"] = {"href": href + "thumb.png", "type": "image/png", "roles": ["thumbnail"]}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2B_33UUB_20230612_0_L2A",
            "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "geometry": {"type": "Point", "coordinates": [12.0, 50.0]}, "bbox": [12.0, 50.0, 12.0, 50.0],
            "properties": {"datetime": "2023-06-12T10:10:31Z"}, "links": [], "assets": assets}
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path
