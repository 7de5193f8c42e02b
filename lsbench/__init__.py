"""lsbench: a benchmark for large-small model collaboration between cloud and edge."""
__version__ = "0.1.0"
