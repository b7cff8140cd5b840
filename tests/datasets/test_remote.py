"""Remote .npz files: fetched from a loopback HTTP server, pinned by SHA-256, cached by content."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainlib.components.datasets_remote import fetch_verified, load_npz_url
from trainlib.errors import DataError


class CountingHandler(SimpleHTTPRequestHandler):
    """Serves a folder and notes each requested path in `seen`."""

    def __init__(self, *args: Any, seen: list[str], **kwargs: Any) -> None:
        self.seen = seen  # before super().__init__, which handles the request
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Served:
    url: str
    root: Path
    seen: list[str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A loopback HTTP server over a folder of its own."""
    root = tmp_path / "served"
    root.mkdir()
    seen: list[str] = []
    handler = partial(CountingHandler, directory=str(root), seen=seen)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_address[1]}", root, seen)
    finally:
        server.shutdown()
        server.server_close()


def write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_downloads_once_and_reads_the_arrays(served: Served, tmp_path: Path) -> None:
    url, root = served.url, served.root
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10) % 3
    sha = write_npz(root / "data.npz", x, y)
    cache = tmp_path / "cache"
    arrays = load_npz_url(f"{url}/data.npz", sha, cache)
    np.testing.assert_array_equal(arrays.x, x)
    np.testing.assert_array_equal(arrays.y, y)
    assert [p.name for p in cache.iterdir()] == [f"{sha}.npz"]
    again = load_npz_url(f"{url}/data.npz", sha.upper(), cache)
    np.testing.assert_array_equal(again.x, x)
    assert served.seen == ["/data.npz"]  # the second read came from the cache


def test_a_wrong_hash_or_an_oversize_file_leaves_nothing(served: Served, tmp_path: Path) -> None:
    url, root = served.url, served.root
    sha = write_npz(root / "data.npz", np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="SHA-256"):
        fetch_verified(f"{url}/data.npz", "0" * 64, cache)
    size = (root / "data.npz").stat().st_size
    with pytest.raises(DataError, match="larger than"):
        fetch_verified(f"{url}/data.npz", sha, cache, max_bytes=size - 1)
    assert list(cache.iterdir()) == []
    assert fetch_verified(f"{url}/data.npz", sha, cache, max_bytes=size).stat().st_size == size


def test_missing_files_bad_urls_and_pickles_are_data_errors(served: Served, tmp_path: Path) -> None:
    url, root = served.url, served.root
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download"):
        fetch_verified(f"{url}/absent.npz", "0" * 64, cache)
    with pytest.raises(DataError, match="only http"):
        fetch_verified(f"file://{root}/data.npz", "0" * 64, cache)
    with pytest.raises(DataError, match="64 hexadecimal"):
        fetch_verified(f"{url}/data.npz", "abc", cache)
    ragged = np.array([np.zeros(2), np.zeros(3)], dtype=object)
    np.savez(root / "pickled.npz", x=ragged, y=np.array([0, 1]))
    sha = hashlib.sha256((root / "pickled.npz").read_bytes()).hexdigest()
    with pytest.raises(DataError, match="pickle"):
        load_npz_url(f"{url}/pickled.npz", sha, cache)
