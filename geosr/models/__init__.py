"""Pure-torch models: the super-resolver interface, classical back-ends and the diffusion denoiser.

Nothing here imports rasterio, geopandas, osmnx or dask.
"""
