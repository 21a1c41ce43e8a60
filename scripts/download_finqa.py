#!/usr/bin/env python
"""Download the official FinQA splits (train/dev/test.json) and verify each by its git blob id.

The files come from github.com/czyssrs/FinQA at a pinned commit (MIT licence, Chen et al., EMNLP 2021)
and land in ``FinQA/dataset/`` (git-ignored). ``--base_url`` may name another http(s):// or file:// folder, or
a local folder (e.g. a clone of the FinQA repository's ``dataset/``). A file already there and verified is
kept; a download whose blob id differs is rejected and never replaces anything. Without network access,
with a bad URL or a missing local folder this fails quickly with one clear line; ``FinQA/sample/`` holds a
synthetic FinQA-format sample for offline use.

    python scripts/download_finqa.py [--output_dir DIR] [--splits train dev test] [--timeout 20] [--base_url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from finqa_dsl.core.io import atomic_write_text
from finqa_dsl.locations import DATASET_DIR

FINQA_REPO = "czyssrs/FinQA"
FINQA_COMMIT = "0f16e2867befa6840783e58be38c9efb9229d742"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{FINQA_REPO}/{FINQA_COMMIT}/dataset"
DEFAULT_OUTPUT_DIR = DATASET_DIR
EXPECTED_BLOB_IDS = {
    "train": "a6c2c5a60f9abe3fba5a793cc4d9e1dee2e09209",
    "dev": "970f239f591c782b17df420c0d343b780737f3da",
    "test": "59958c7c3bb3b21f4dff6bc912a0fe0ae710aee0",
}
OFFLINE_HINT = ("FinQA/sample/ holds a synthetic FinQA-format sample (train/dev/test.json) for offline use; "
                "see FinQA/README.md.")


class DownloadError(Exception):
    """A split that could not be fetched or verified; the message says which and why."""


class NetworkUnreachable(DownloadError):
    """The source could not be reached at all: no point trying the other splits."""


class BadSource(DownloadError):
    """``--base_url`` is neither an http(s)/file URL nor an existing local folder."""


URL_SCHEMES = ("http", "https")


def local_folder(base: str) -> Path | None:
    """The folder a ``file://`` URL or a plain path names; None for an http(s) URL. Raises :class:`BadSource`
    for another scheme or a folder that does not exist."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme in URL_SCHEMES:
        if not parts.netloc:
            raise BadSource(f"--base_url {base}: no host in the URL")
        return None
    if parts.scheme == "file":
        folder = Path(urllib.request.url2pathname(parts.path))
    elif parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive
        raise BadSource(f"--base_url {base}: unsupported URL scheme {parts.scheme!r}: give an http(s):// or "
                        "file:// URL, or a local folder")
    else:
        folder = Path(base).expanduser()
    if not folder.is_dir():
        raise BadSource(f"--base_url {base}: no such local folder")
    return folder


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with this content: sha1 of ``b"blob <len>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_id(path: Path) -> str | None:
    """The blob id of the file at ``path``, or None when there is no such file."""
    return git_blob_id(path.read_bytes()) if path.is_file() else None


def fetch(url: str, timeout: float) -> bytes:
    """The body of ``url``; network and HTTP failures become :class:`DownloadError`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NetworkUnreachable(
            f"cannot reach {url} ({reason}): no network from this machine, or a wrong host in --base_url "
            f"(or the host is down). {OFFLINE_HINT}"
        ) from None


def read_local(path: Path) -> bytes:
    """The bytes of a split in a local source folder; a missing or unreadable file is a :class:`DownloadError`."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise DownloadError(f"{path}: {error.strerror or error}") from None


def download_split(split: str, *, base_url: str, output_dir: Path, timeout: float) -> str:
    """Make ``output_dir/<split>.json`` the verified official file; return what was done."""
    expected = EXPECTED_BLOB_IDS[split]
    path = output_dir / f"{split}.json"
    if file_blob_id(path) == expected:
        return f"{path}: already present, blob id {expected} verified"
    folder = local_folder(base_url)
    if folder is not None:
        url, data = str(folder / f"{split}.json"), read_local(folder / f"{split}.json")
    else:
        url = f"{base_url.rstrip('/')}/{split}.json"
        data = fetch(url, timeout)
    actual = git_blob_id(data)
    if actual != expected:
        raise DownloadError(f"{url}: blob id {actual} != expected {expected} ({len(data)} bytes); "
                            f"rejected, {path} left as it was")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DownloadError(f"{url}: not UTF-8 ({error}); rejected, {path} left as it was") from None
    atomic_write_text(path, text)
    if file_blob_id(path) != expected:
        raise DownloadError(f"{path}: written file does not match blob id {expected}")
    return f"{path}: downloaded, blob id {expected} verified"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help="where the split files go (default: FinQA/dataset)")
    parser.add_argument("--splits", nargs="+", choices=list(EXPECTED_BLOB_IDS),
                        default=list(EXPECTED_BLOB_IDS))
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL,
                        help="folder URL holding <split>.json (default: the pinned czyssrs/FinQA commit)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per network operation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        local_folder(args.base_url)
    except BadSource as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    failures = 0
    for split in args.splits:
        try:
            print(download_split(split, base_url=args.base_url, output_dir=args.output_dir,
                                 timeout=args.timeout))
        except NetworkUnreachable as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
