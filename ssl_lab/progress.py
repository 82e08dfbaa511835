"""Progress bars for the command line, never in a rendered page.

A bar shows when the caller asks for one *and* standard error is a terminal (or
``SSL_LAB_PROGRESS=1``); ``SSL_LAB_PROGRESS=0`` turns every bar off. So `python -m ssl_lab
train` shows its bars, while a notebook executed by the book build, nbval or papermill writes
no progress-bar transcript into its outputs.
"""
from __future__ import annotations

import os
import sys


def interactive() -> bool:
    flag = os.environ.get("SSL_LAB_PROGRESS", "")
    if flag in ("0", "1"):
        return flag == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable, desc: str = "", show: bool = True, **kw):
    """``tqdm(iterable)`` when ``show`` and :func:`interactive`, else a silent one."""
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, disable=not (show and interactive()), **kw)
