from geosr._version import __version__
