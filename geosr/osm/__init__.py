"""OpenStreetMap maps for geosr: the grid, the sources (Overpass, files), the class table, rasterizing.

Importing this package is cheap; osmnx, geopandas and pyosmium load on first use. The workflow that writes
a map is :func:`geosr.pipeline.rasterize_osm.rasterize_osm` (the Python form of ``geosr rasterize-osm``,
also ``geosr.rasterize_osm``).
"""
