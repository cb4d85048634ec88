"""OpenStreetMap maps for geosr: sources (Overpass, files), the class table, rasterizing onto a grid.

Importing this package is cheap; osmnx, geopandas and pyosmium load on first use. The public entry point
is :func:`geosr.osm.api.rasterize_osm` (the Python form of ``geosr rasterize-osm``, also ``geosr.rasterize_osm``).
"""
