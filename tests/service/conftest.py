"""Fixtures the service tests share: the local feed server (``feed_server``)."""

from tests.intel.feed_server import feed_server

__all__ = ["feed_server"]
