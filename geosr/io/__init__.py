"""Raster I/O: inspecting and reading inputs, writing COGs atomically, the resume journal (no torch)."""
