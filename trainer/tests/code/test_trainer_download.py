"""Training data from a URL (what the chart's trainer Job uses when the data is not on a volume)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelberth_trainer.data import load_input
from modelberth_trainer.errors import DataError
from modelberth_trainer.settings import TrainerSettings

CSV = b"a,b,y\n1,2,no\n3,4,yes\n5,6,no\n"
SHA = hashlib.sha256(CSV).hexdigest()

pytestmark = pytest.mark.integration  # a real HTTP server on 127.0.0.1


@pytest.fixture
def site() -> Iterator[str]:
    """A web server answering /data/bank.csv (and 404 elsewhere); its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/data/bank.csv":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_is_downloaded_checked_and_recorded_without_its_query(site: str) -> None:
    url = f"{site}/data/bank.csv?X-Amz-Signature=secret-signature"
    table, _ = load_input(TrainerSettings(data_url=url, data_sha256=SHA.upper()))
    assert table.frame.shape == (3, 3)
    assert table.source == f"{site}/data/bank.csv"
    assert table.stem == "bank"
    assert table.sha256 == SHA


@pytest.mark.parametrize(
    ("url", "sha", "why"),
    [
        ("{site}/data/bank.csv?sig=secret-signature", "0" * 64, "does not match --data-sha256"),
        ("{site}/missing.csv?sig=secret-signature", None, "HTTP 404"),
        ("http://10.255.255.1:9/x.csv?sig=secret-signature", None, "plain HTTP is refused"),
        ("https://user:secret-signature@example.com/x.csv", None, "credentials in the URL are refused"),
        ("ftp://example.com/x.csv?sig=secret-signature", None, "only https:// URLs"),
        ("http://127.0.0.1:9/x.csv?sig=secret-signature", None, "cannot download"),
    ],
)
def test_bad_urls_and_bad_bytes_are_one_line_without_the_query(
    site: str, url: str, sha: str | None, why: str
) -> None:
    with pytest.raises(DataError, match=why) as info:
        load_input(TrainerSettings(data_url=url.format(site=site), data_sha256=sha))
    assert "secret-signature" not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_local_file_is_checked_against_its_sha256_too(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_bytes(CSV)
    assert load_input(TrainerSettings(data=path, data_sha256=SHA))[0].sha256 == SHA
    with pytest.raises(DataError, match="does not match --data-sha256"):
        load_input(TrainerSettings(data=path, data_sha256="1" * 64))
    with pytest.raises(ValueError, match="give one"):
        TrainerSettings(data=path, data_url="https://example.com/x.csv")
