"""rhosym: learn crystal symmetry and properties from 3D electron density."""

__version__ = "0.1.0"
