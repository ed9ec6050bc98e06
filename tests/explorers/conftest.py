"""Fixtures the explorer tests share (and the screening tests may import): the loopback
explorers of ``explorer_server.py``."""

from tests.explorers.explorer_server import blockscout, explorer

__all__ = ["blockscout", "explorer"]
