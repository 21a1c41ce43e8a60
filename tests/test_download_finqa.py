"""scripts/download_finqa.py: blob ids, the offline failure, verification against a real local HTTP server."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import REPO_ROOT


def _load_script():
    from scripts import download_finqa

    return download_finqa


download = _load_script()


class _QuietHandler(SimpleHTTPRequestHandler):
    requested: list[str]

    def do_GET(self):  # noqa: N802 (the http.server name)
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on 127.0.0.1; yields (the folder behind its base url, base url, paths asked)."""
    root = tmp_path / "served"
    folder = root / "dataset"
    folder.mkdir(parents=True)
    requested: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/dataset", requested
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_git_blob_id_matches_known_ids_and_git(tmp_path):
    assert download.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert download.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    if shutil.which("git") is None:
        pytest.skip("git is not installed: compared with the known ids only")
    content = '[{"id": "X/2019/page_1.pdf-1", "qa": {"question": "caf\u00e9 ?"}}]\n'.encode()
    path = tmp_path / "sample.json"
    path.write_bytes(content)
    hashed = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert download.git_blob_id(content) == hashed.stdout.strip()


def test_offline_fails_after_one_request_with_a_clear_message(tmp_path, capsys, monkeypatch):
    requested, slept = [], []
    real_urlopen = download.urllib.request.urlopen
    monkeypatch.setattr(download.urllib.request, "urlopen",
                        lambda url, **kwargs: requested.append(url) or real_urlopen(url, **kwargs))
    monkeypatch.setattr(time, "sleep", slept.append)
    code = download.main(["--output_dir", str(tmp_path / "out"), "--timeout", "5",
                          "--base_url", f"http://127.0.0.1:{_closed_port()}/dataset"])
    assert code != 0
    assert len(requested) == 1 and not slept, "no retry, no back-off, no other split tried once the host is unreachable"
    message = capsys.readouterr().err
    assert "cannot reach" in message and "no network" in message and "FinQA/sample" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_verified_file_lands_and_is_then_kept(served, tmp_path, monkeypatch, capsys):
    folder, base_url, requested = served
    (folder / "train.json").write_bytes(b'[{"id": "a"}]\n')
    monkeypatch.setitem(download.EXPECTED_BLOB_IDS, "train", download.git_blob_id(b'[{"id": "a"}]\n'))
    out = tmp_path / "out"
    args = ["--output_dir", str(out), "--base_url", base_url, "--splits", "train"]
    assert download.main(args) == 0
    assert (out / "train.json").read_bytes() == b'[{"id": "a"}]\n'
    assert requested == ["/dataset/train.json"]
    assert download.main(args) == 0
    assert requested == ["/dataset/train.json"], "a verified file is not fetched again"
    assert "already present" in capsys.readouterr().out


def test_corrupted_download_is_rejected_and_nothing_valid_is_deleted(served, tmp_path, monkeypatch, capsys):
    folder, base_url, _ = served
    good, stale = b'[{"id": "good"}]\n', b'[{"id": "old"}]\n'
    (folder / "train.json").write_bytes(good)
    (folder / "dev.json").write_bytes(b'[{"id": "tampered"}]\n')
    monkeypatch.setitem(download.EXPECTED_BLOB_IDS, "train", download.git_blob_id(good))
    monkeypatch.setitem(download.EXPECTED_BLOB_IDS, "dev", download.git_blob_id(b'[{"id": "dev"}]\n'))
    out = tmp_path / "out"
    out.mkdir()
    (out / "dev.json").write_bytes(stale)
    code = download.main(["--output_dir", str(out), "--base_url", base_url, "--splits", "dev", "train"])
    assert code != 0
    assert "blob id" in capsys.readouterr().err
    assert (out / "dev.json").read_bytes() == stale, "the rejected download replaced nothing"
    assert (out / "train.json").read_bytes() == good, "the other split still lands"
    assert sorted(path.name for path in out.iterdir()) == ["dev.json", "train.json"], "no temporary left"


def test_missing_remote_file_is_an_http_error(served, tmp_path, capsys):
    _, base_url, _ = served
    assert download.main(["--output_dir", str(tmp_path), "--base_url", base_url, "--splits", "test"]) != 0
    assert "HTTP 404" in capsys.readouterr().err


@pytest.mark.parametrize(("base_url", "message"), [
    ("htp://example.org/dataset", "--base_url htp://example.org/dataset: unsupported URL scheme 'htp'"),
    ("https:///dataset", "--base_url https:///dataset: no host in the URL"),
    ("file:///nonexistent/finqa", "--base_url file:///nonexistent/finqa: no such local folder"),
    ("nonexistent/finqa/dataset", "--base_url nonexistent/finqa/dataset: no such local folder"),
])
def test_a_bad_url_or_missing_local_folder_is_one_line_without_network(tmp_path, base_url, message):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "download_finqa.py"), "--base_url", base_url,
                             "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


def test_a_local_folder_is_a_source_and_a_missing_split_there_is_named(tmp_path, monkeypatch, capsys):
    source = tmp_path / "clone" / "dataset"
    source.mkdir(parents=True)
    (source / "dev.json").write_bytes(b'[{"id": "d"}]\n')
    monkeypatch.setitem(download.EXPECTED_BLOB_IDS, "dev", download.git_blob_id(b'[{"id": "d"}]\n'))
    out = tmp_path / "out"
    for base in (str(source), source.as_uri()):
        assert download.main(["--output_dir", str(out), "--base_url", base, "--splits", "dev"]) == 0
        assert (out / "dev.json").read_bytes() == b'[{"id": "d"}]\n'
        (out / "dev.json").unlink()
    assert download.main(["--output_dir", str(out), "--base_url", str(source), "--splits", "test"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {source / 'test.json'}: No such file or directory"]
