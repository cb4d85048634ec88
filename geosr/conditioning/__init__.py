"""Conditioning inputs: radiometry (model space), the reference, change masks and maps (no torch)."""
