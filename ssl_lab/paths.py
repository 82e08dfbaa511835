"""Where things live, and writes that never leave a half-written file behind."""
from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import torch


def home() -> Path:
    """The cache of rendered splits and trained artefacts: ``$SSL_LAB_HOME`` or
    ``~/.cache/ssl_lab``."""
    return Path(os.environ.get("SSL_LAB_HOME", Path.home() / ".cache" / "ssl_lab"))


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj, path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename."""
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_deflated(obj, path) -> Path:
    """:func:`atomic_save` with the zip records deflated (zlib level 9): what the shipped zoo
    writes. ``torch.save`` stores its records uncompressed (so that they can be memory-mapped);
    ``torch.load`` reads deflated ones too, and int8 weights take about 10 % fewer bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(buf) as z:
        records = [(i.filename, z.read(i)) for i in z.infolist()]

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for name, data in records:
                z.writestr(name, data)
    return _atomic(path, write)


def atomic_write_text(text: str, path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))
