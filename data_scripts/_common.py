"""Helpers shared by the prepare_*.py scripts: atomic copies and extraction, locating
files in a download, checksums, and reporting; and the command line of the experiment
scripts (``train VARIANT`` / ``record``).  Nothing here downloads anything."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # so that the scripts import this checkout's ssl_lab
    sys.path.insert(0, str(REPO))

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")


class PrepareError(RuntimeError):
    """A problem with the inputs given to a prepare script."""


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="the data root; the dataset is written to a folder under it")
    p.add_argument("--link", action="store_true",
                   help="symlink source folders instead of copying them (archives are extracted)")
    p.add_argument("--force", action="store_true", help="replace folders that already exist")
    p.add_argument("--verify-only", action="store_true",
                   help="do not copy anything, only verify what is under --out")
    return p


def variant_cli(doc: str, variants, train: Callable[[str], None], record: Callable[[], None]) -> None:
    """The experiment scripts' command line: ``train VARIANT`` (one of ``variants``) or ``record``."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train").add_argument("variant", choices=sorted(variants))
    sub.add_parser("record")
    a = ap.parse_args()
    train(a.variant) if a.cmd == "train" else record()


def run(main: Callable[[], None]) -> None:
    """Run a script's main; dataset and input errors become one line and exit status 2.
    (The scripts import ssl_lab, hence torch, only after parsing, so --help is quick.)"""
    try:
        main()
    except (FileNotFoundError, ValueError, PrepareError) as err:
        from ssl_lab.data.images import DatasetNotFound, MalformedDataset

        if not isinstance(err, (DatasetNotFound, MalformedDataset, PrepareError)):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


@contextmanager
def atomic_dir(dst: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``dst``; rename it to ``dst`` on success,
    delete it on failure, so ``dst`` is never left half-written."""
    dst = Path(dst)
    if dst.exists() or dst.is_symlink():
        if not force:
            raise PrepareError(f"{dst} exists; pass --force to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.is_symlink():
            tmp.unlink()
        elif tmp.exists():
            shutil.rmtree(tmp)


def atomic_copy_file(src: Path, dst: Path) -> None:
    """Copy a file to ``dst`` through a temporary file and a rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVES)


def extract(archive: Path, into: Path) -> None:
    """Extract a zip or tar archive into the folder ``into`` (refusing unsafe paths)."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            try:
                t.extractall(into, filter="data")
            except TypeError:  # Python without extraction filters
                t.extractall(into)


def place(src: Path, dst: Path, link: bool = False, force: bool = False) -> None:
    """Put a folder, or the contents of an archive (unwrapping a single top folder), at
    ``dst``, atomically; ``link`` symlinks a folder instead of copying it."""
    if src.is_dir() and link:
        with atomic_dir(dst, force) as tmp:
            os.rmdir(tmp)
            os.symlink(src.resolve(), tmp, target_is_directory=True)
        return
    with atomic_dir(dst, force) as tmp:
        if src.is_dir():
            shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=False)
        elif is_archive(src):
            extract(src, tmp)
            entries = list(tmp.iterdir())
            if len(entries) == 1 and entries[0].is_dir():  # unwrap a single top folder
                top = entries[0].rename(tmp / ".unwrap")
                for child in top.iterdir():
                    child.rename(tmp / child.name)
                top.rmdir()
        else:
            raise PrepareError(f"{src} is neither a folder nor a .zip/.tar archive")


def find(src: Path, *names: str) -> Path:
    """The first of ``names`` found in ``src`` or below it (shallowest wins)."""
    if not src.exists():
        raise PrepareError(f"{src} does not exist")
    for name in names:
        if (src / name).exists():
            return src / name
        hits = sorted(src.rglob(Path(name).name), key=lambda p: (len(p.parts), str(p)))
        hits = [h for h in hits if str(h.relative_to(src)).endswith(name)]
        if hits:
            return hits[0]
    raise PrepareError(f"none of {', '.join(names)} found under {src}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_checksums(root: Path, known: dict[str, str]) -> None:
    """Print the sha256 of each file in ``known`` (relative to root) and compare it with the
    recorded value where one is recorded (an empty string means none is)."""
    from ssl_lab.data.images import MalformedDataset

    for rel, expected in known.items():
        path = root / rel
        if not path.exists():
            continue
        digest = sha256(path)
        if expected and digest != expected:
            raise MalformedDataset(f"{path}: sha256 {digest} differs from the recorded {expected}; "
                                   "the file is corrupt or a different release")
        print(f"  sha256 {digest}  {rel}" + ("  (matches)" if expected else "  (no recorded value)"))


def report(label: str, got: int, expected: int | None) -> bool:
    full = expected is None or got == expected
    note = "" if expected is None else (" (the full dataset)" if full else
                                        f" (the full dataset has {expected}: a partial copy)")
    print(f"  {label}: {got}{note}")
    return full


def report_splits(label: str, make: Callable[[str], object], sizes_key: str) -> None:
    """Build the train and test datasets with ``make(split)``, report their sizes against
    the full benchmark's (``faces.EXPECTED_SIZES[sizes_key, split]``) and read one item."""
    from ssl_lab.data import faces
    for split in ("train", "test"):
        ds = make(split)
        report(f"{label} {split}", len(ds), faces.EXPECTED_SIZES[sizes_key, split])
        if len(ds):
            item = ds[0]
            print(f"    first: {item['name']}, image {tuple(item['image'].shape)}")
