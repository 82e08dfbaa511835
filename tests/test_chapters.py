"""The chapters as documents: what a reader sees, checked on the committed notebooks."""
import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _figure_cells(nb):
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
            yield i, c


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_was_executed_in_order(path):
    """The book is built from the committed outputs (_config.yml: execute_notebooks off), so
    every chapter must be committed executed top to bottom in one kernel (nbval then checks
    that a fresh run reproduces those outputs)."""
    nb = json.loads(path.read_text())
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: code cells not executed in order in one run (execution counts {counts}); "
        f"re-execute it: SSL_LAB_TRAIN=never jupyter execute --inplace {path.relative_to(BOOK.parent)}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_a_caption_sentence_under_it(path):
    nb = json.loads(path.read_text())
    for i, _ in _figure_cells(nb):
        nxt = nb["cells"][i + 1] if i + 1 < len(nb["cells"]) else None
        text = "".join(nxt["source"]).strip() if nxt and nxt["cell_type"] == "markdown" else ""
        assert text.startswith("*Figure") and text.rstrip("*").endswith("."), (
            f"{path.name}: the figure of cell {i} has no caption sentence ('*Figure: ...*') under it")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_committed_output_is_a_progress_bar_or_a_training_transcript(path):
    nb = json.loads(path.read_text())
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            text = "".join(o.get("text", ""))
            assert "it/s]" not in text and "s/it]" not in text and "%|" not in text, (
                f"{path.name}: cell {i} committed a progress bar: {text[:120]!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_result_cell_hides_its_output_from_nbval(path):
    """Only timing and provenance cells (wall times, speeds, device names) may be tagged
    nbval-ignore-output or nbval-skip; those print no table of results."""
    nb = json.loads(path.read_text())
    for i, c in enumerate(nb["cells"]):
        tags = set(c.get("metadata", {}).get("tags", []))
        if tags & {"nbval-ignore-output", "nbval-skip"}:
            src = "".join(c["source"])
            assert "reference.beside" not in src and "results.make_record" not in src, (
                f"{path.name}: cell {i} hides a result from nbval")
