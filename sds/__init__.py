"""SDS: software-defined distributed storage in the spirit of Ceph."""

__version__ = "0.1.0"
