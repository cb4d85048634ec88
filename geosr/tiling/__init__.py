"""Pure geometry: the HR grid, the window plan and the blending weights (no torch, no file I/O)."""
