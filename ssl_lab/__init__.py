"""ssl_lab: the package behind the ssl-lab book."""
__version__ = "0.1.0"
