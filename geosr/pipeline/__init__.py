"""The workflows: upscale (one scene), batch (many, on Dask). The only layer that joins GIS and torch."""
