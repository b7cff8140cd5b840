"""Data files shipped with trainlib (see README.md for their sources and licences)."""
