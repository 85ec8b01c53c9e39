"""Download-once files: fetched into the cache, checksum recorded on first download and verified afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scldbench.data.cache import cache_dir
from scldbench.errors import ScldbenchError

CHECKSUMS = "checksums.json"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_checksum(folder: Path, filename: str, digest: str) -> None:
    sums = _checksums(folder) | {filename: digest}
    tmp = folder / f".{CHECKSUMS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(sums, indent=2, sort_keys=True))
    os.replace(tmp, folder / CHECKSUMS)


def fetch(remote: RemoteFile, dataset: str) -> Path:
    """Path of the cached file, downloading it first if needed; verified against the checksum recorded before."""
    folder = cache_dir("datasets", dataset)
    target = folder / remote.filename
    if not target.is_file():
        partial = folder / f".{remote.filename}.part"
        try:
            with urllib.request.urlopen(remote.url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ScldbenchError(
                f"cannot download dataset {dataset!r} from {remote.url} ({exc}); "
                f"download it by hand and place it at {target}"
            ) from exc
        os.replace(partial, target)
        _record_checksum(folder, remote.filename, sha256(target))
        return target
    recorded = _checksums(folder).get(remote.filename)
    digest = sha256(target)
    if recorded is None:
        _record_checksum(folder, remote.filename, digest)
    elif recorded != digest:
        raise ScldbenchError(
            f"{target} does not match the checksum recorded when it was first downloaded; "
            f"delete it (and {folder / CHECKSUMS}) to download it again"
        )
    return target


def extract_tar(archive: Path) -> Path:
    """Extract a tarball next to itself once; return the extraction folder."""
    out = archive.parent / (archive.name.split(".tar")[0])
    if not out.is_dir():
        tmp = out.with_name(out.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python without extraction filters
                    tar.extractall(tmp)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ScldbenchError(
                f"{archive} is not a readable tar archive ({exc}); delete it and download again"
            ) from exc
        os.replace(tmp, out)
    return out
