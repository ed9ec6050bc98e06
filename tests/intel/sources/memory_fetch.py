"""An in-memory ``Fetch`` for adapter tests: a dict of location -> body."""

from collections.abc import Mapping
from pathlib import Path

from kamiyo.intel.sources.base import Document, FetchError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "sources"


class MemoryFetch:
    """Serves ``documents`` (None = "not modified"), records each location asked for, and
    fails like the real fetch layer for a location it does not hold."""

    def __init__(self, documents: Mapping[str, bytes | None]) -> None:
        self.documents = dict(documents)
        self.asked: list[str] = []

    async def __call__(self, location: str) -> Document | None:
        self.asked.append(location)
        if location not in self.documents:
            raise FetchError(f"{location}: HTTP 404")
        body = self.documents[location]
        return None if body is None else Document(location=location, body=body)


def fixture(source: str, name: str) -> bytes:
    return (FIXTURES / source / name).read_bytes()
