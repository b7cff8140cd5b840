"""Remote data files: downloaded once, pinned by SHA-256, cached by content, read without pickle.

Not a registered data set: whether workers may reach out to the network (and to which hosts) is
a deployment decision. A data set that wants a remote .npz calls `load_npz_url` with a cache
folder; the file is read by the upload reader, so the same shape, dtype and no-pickle checks
apply.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from trainlib.components.datasets_upload import Arrays, UploadError, read_upload
from trainlib.errors import DataError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def fetch_verified(
    url: str, sha256: str, cache_dir: Path, *, max_bytes: int = 2**30, timeout_s: float = 60.0
) -> Path:
    """The file at `url` as `cache_dir/<sha256><suffix>`, downloaded only when not cached.

    The download streams into a temporary file beside the target and is renamed into place
    only once its size and SHA-256 check out, so the cache never holds a partial or wrong file
    and a cached file is trusted without re-reading. Only http(s) URLs are fetched.
    """
    sha256 = sha256.lower()
    if not SHA256.match(sha256):
        raise DataError("sha256 must be 64 hexadecimal digits")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise DataError(f"only http(s) URLs are fetched, not {parts.scheme or 'a bare path'!r}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{sha256}{Path(parts.path).suffix}"
    if target.exists():
        return target
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".partial-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            while chunk := resp.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise DataError(f"{url} is larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise DataError(f"{url} does not have the SHA-256 the spec pins")
        os.replace(tmp, target)
    except OSError as exc:  # urllib's URLError and HTTPError are OSErrors
        raise DataError(f"could not download {url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_npz_url(url: str, sha256: str, cache_dir: Path, *, max_bytes: int = 2**30) -> Arrays:
    """Arrays `x` and `y` of a remote .npz, validated as an upload is (never unpickled)."""
    path = fetch_verified(url, sha256, cache_dir, max_bytes=max_bytes)
    try:
        return read_upload(path, "npz")
    except UploadError as exc:
        raise DataError(f"{url}: {exc}") from None
