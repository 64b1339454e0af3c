"""Downloader against a local HTTP server on 127.0.0.1 (started here; no other traffic)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tool_scripts import load_tool

from megatron_biomed.data.download import (
    SOURCES,
    ChecksumError,
    DownloadConfig,
    Source,
    download_source,
    parse_index,
    parse_md5,
)

ROOT = Path(__file__).resolve().parents[2]




download_pubmed = load_tool("download_pubmed")


class FakeNcbi:
    """Serves ``files`` (path -> bytes) plus directory indexes; can corrupt chosen responses."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: Counter = Counter()
        self.corrupt_first: set[str] = set()  # wrong bytes on the first request only
        self.corrupt_always: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                server.requests[path] += 1
                if path.endswith("/"):
                    names = sorted({p[len(path):].split("/")[0] for p in server.files if p.startswith(path)})
                    body = "<html><body><a href=\"../\">Parent</a>" + "".join(
                        f'<a href="{n}">{n}</a> 2024-12-01 12:00  30M<br>' for n in names) + "</body></html>"
                    data = body.encode()
                elif path in server.files:
                    data = server.files[path]
                    if path in server.corrupt_always or (path in server.corrupt_first and server.requests[path] == 1):
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def md5_line(name: str, data: bytes) -> bytes:
    return f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()


def baseline_files(n: int = 4) -> dict[str, bytes]:
    files = {"/pubmed/baseline/README.txt": b"not a data file"}
    for i in range(1, n + 1):
        name = f"pubmed25n{i:04d}.xml.gz"
        data = (f"payload {i} ".encode()) * (5000 * i)
        files[f"/pubmed/baseline/{name}"] = data
        files[f"/pubmed/baseline/{name}.md5"] = md5_line(name, data)
    return files


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def cfg(server, out, **kw) -> DownloadConfig:
    kw = {"workers": 2, "retries": 2, "backoff_s": 0.0, "timeout_s": 10.0, "progress": False, **kw}
    return DownloadConfig(output_dir=out, base_url=server.url, **kw)


def test_download_verify_refetch_and_resume(tmp_path):
    files = baseline_files()
    bad = "/pubmed/baseline/pubmed25n0002.xml.gz"
    with FakeNcbi(files) as server:
        server.corrupt_first.add(bad)
        report = download_source(SOURCES["pubmed-baseline"], cfg(server, tmp_path))
        assert [r.name for r in report.results] == [f"pubmed25n{i:04d}.xml.gz" for i in range(1, 5)]
        assert report.count("downloaded") == 4 and not report.failed
        assert all(r.verified for r in report.results)
        # the corrupted copy was rejected and fetched again
        assert server.requests[bad] == 2
        assert {r.name: r.attempts for r in report.results}["pubmed25n0002.xml.gz"] == 2
        for path, data in files.items():
            if path.endswith(".xml.gz"):
                assert (tmp_path / Path(path).name).read_bytes() == data
        assert not list(tmp_path.glob("*.part")) and not (tmp_path / "README.txt").exists()

        # second run: every file verified before, no data file requested again
        before = Counter({p: n for p, n in server.requests.items() if p.endswith(".xml.gz")})
        again = download_source(SOURCES["pubmed-baseline"], cfg(server, tmp_path))
        assert again.count("skipped") == 4 and again.count("downloaded") == 0
        after = Counter({p: n for p, n in server.requests.items() if p.endswith(".xml.gz")})
        assert after == before

        # a local file that no longer matches is re-fetched with --verify-existing
        (tmp_path / "pubmed25n0003.xml.gz").write_bytes(b"damaged")
        fixed = download_source(SOURCES["pubmed-baseline"], cfg(server, tmp_path, verify_existing=True))
        assert {r.name: r.status for r in fixed.results}["pubmed25n0003.xml.gz"] == "downloaded"
        assert (tmp_path / "pubmed25n0003.xml.gz").read_bytes() == files["/pubmed/baseline/pubmed25n0003.xml.gz"]


def test_always_wrong_checksum_fails_after_retries(tmp_path, capsys):
    files = baseline_files(2)
    bad = "/pubmed/baseline/pubmed25n0001.xml.gz"
    with FakeNcbi(files) as server:
        server.corrupt_always.add(bad)
        rc = download_pubmed.main(["--source", "pubmed-baseline", "--output-dir", str(tmp_path), "--base-url",
                                   server.url, "--retries", "2", "--backoff-s", "0", "--no-progress"])
        assert rc == 1
        assert server.requests[bad] == 3  # first try + 2 retries, then it gives up
    out = capsys.readouterr().out
    assert "failed pubmed25n0001.xml.gz after 3 attempt(s): checksum mismatch" in out
    folder = tmp_path / "pubmed-baseline"
    assert not (folder / "pubmed25n0001.xml.gz").exists() and not list(folder.glob("*.part"))
    assert (folder / "pubmed25n0002.xml.gz").exists()


def test_missing_md5_fails_where_required_and_is_reported_where_not(tmp_path):
    data = b"tarball bytes" * 100
    files = {"/pubmed/updatefiles/pubmed25n1300.xml.gz": data,
             "/pub/pmc/oa_bulk/oa_comm/xml/oa_comm_xml.PMC000xxxxxx.baseline.2024-12-18.tar.gz": data,
             "/pub/pmc/oa_bulk/oa_comm/xml/oa_comm_xml.PMC000xxxxxx.baseline.2024-12-18.filelist.csv": b"x"}
    with FakeNcbi(files) as server:
        upd = download_source(SOURCES["pubmed-updates"], cfg(server, tmp_path / "u", retries=0))
        assert upd.count("failed") == 1 and "no pubmed25n1300.xml.gz.md5" in upd.failed[0].error
        assert not (tmp_path / "u" / "pubmed25n1300.xml.gz").exists()
        pmc = download_source(SOURCES["pmc-oa-comm"], cfg(server, tmp_path / "p"))
        assert [(r.name, r.status, r.verified) for r in pmc.results] == [
            ("oa_comm_xml.PMC000xxxxxx.baseline.2024-12-18.tar.gz", "downloaded", False)]
        assert "not verified" in pmc.format()


def test_limit_and_include(tmp_path):
    with FakeNcbi(baseline_files(4)) as server:
        r = download_source(SOURCES["pubmed-baseline"], cfg(server, tmp_path, include=r"n000[234]", limit=2))
        assert [x.name for x in r.results] == ["pubmed25n0002.xml.gz", "pubmed25n0003.xml.gz"]


def test_parse_md5_and_index():
    h = "0" * 31 + "a"
    assert parse_md5(f"MD5(pubmed25n0001.xml.gz)= {h}\n", "pubmed25n0001.xml.gz") == h
    assert parse_md5(f"{h.upper()}  pubmed25n0001.xml.gz\n", "pubmed25n0001.xml.gz") == h
    with pytest.raises(ChecksumError, match="is for"):
        parse_md5(f"MD5(other.xml.gz)= {h}", "pubmed25n0001.xml.gz")
    with pytest.raises(ChecksumError, match="no checksum"):
        parse_md5("<html>error page</html>", "pubmed25n0001.xml.gz")
    html = ('<a href="../">up</a><a href="pubmed25n0001.xml.gz">x</a><a href="pubmed25n0001.xml.gz.md5">m</a>'
            '<a href="/pubmed/baseline/pubmed25n0002.xml.gz">y</a><a href="sub/">d</a>')
    assert parse_index(html, Source("x/", r"^pubmed\d+n\d+\.xml\.gz$", True).pattern) == [
        "pubmed25n0001.xml.gz", "pubmed25n0002.xml.gz"]


def test_config_errors():
    with pytest.raises(ValueError, match="base_url"):
        DownloadConfig(output_dir=Path("."), base_url="ftp://ftp.ncbi.nlm.nih.gov/")
    with pytest.raises(ValueError, match="workers"):
        DownloadConfig(output_dir=Path("."), workers=0)
