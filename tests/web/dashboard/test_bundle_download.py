"""The set-up page's .mcpb download: a zip with the manifest ``kamiyo bundle`` writes, built
once per process; a server that cannot build it says so."""

import io
import json
import zipfile
from collections.abc import Iterator

import pytest

from kamiyo import __version__, bundle
from kamiyo.mcpserver.server import INSTRUCTIONS
from kamiyo.web.dashboard import bundle_download
from tests.web.dashboard.conftest import Site

pytestmark = pytest.mark.anyio

DOWNLOAD = "/dashboard/setup/kamiyo.mcpb"


@pytest.fixture
def fresh_build() -> Iterator[None]:
    """No bundle kept from an earlier test, nor one of this test's left for the next."""
    bundle_download.BUILT.content = None
    yield
    bundle_download.BUILT.content = None


async def test_the_setup_page_links_the_bundle_and_it_is_a_zip_with_a_manifest(
    site: Site, fresh_build: None
) -> None:
    await site.log_in("bundle@example.com")
    page = await site.http.get("/dashboard/setup")
    assert f'href="{DOWNLOAD}" download' in page.text

    answer = await site.http.get(DOWNLOAD)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == 'attachment; filename="kamiyo.mcpb"'
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        manifest = json.loads(archive.read("manifest.json"))
        assert "src/kamiyo/__main__.py" in archive.namelist()
    assert manifest["name"] == "kamiyo"
    assert manifest["version"] == __version__
    assert manifest["long_description"] == INSTRUCTIONS
    assert {p["name"] for p in manifest["prompts"]} == {
        "protocol_due_diligence",
        "incident_brief",
        "wallet_safety_check",
    }
    kept = bundle_download.BUILT.content
    assert kept == answer.content
    again = await site.http.get(DOWNLOAD)
    assert again.content is not None
    assert bundle_download.BUILT.content is kept  # built once


async def test_the_download_needs_a_session(site: Site) -> None:
    answer = await site.http.get(DOWNLOAD)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"


async def test_a_server_that_cannot_build_it_says_so(
    site: Site, fresh_build: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an installed package, away from a checkout: a file the bundle needs is not there.
    monkeypatch.setattr(bundle, "PROJECT_FILES", (*bundle.PROJECT_FILES, "no-such-file"))
    await site.log_in("nobundle@example.com")
    answer = await site.http.get(DOWNLOAD)
    assert answer.status_code == 503
    assert "The desktop extension is not available here" in answer.text
    assert "content-disposition" not in answer.headers
