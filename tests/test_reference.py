"""ssl_lab.reference: the transcribed numbers match the seed texts they came from."""

import math
import re
from pathlib import Path

import pytest

from ssl_lab import reference
from ssl_lab.reference import TABLES, as_frame, get

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"

EXPECTED_KEYS = {
    *(f"thesis-3.{i}" for i in range(1, 8)),
    *(f"thesis-4.{i}" for i in range(1, 6)),
    "thesis-als", "hsr-3", "ghfeat-6",
    *(f"ltgan-{i}" for i in range(1, 5)),
    "contrafeat-7", "contrafeat-8",
}

# Where each table sits in its seed text: from the first `start` to the next `end`.
# The window holds the caption (where the extraction kept one) and the table body.
WINDOWS = {
    "thesis-3.1": ("Method\tFeat. dim.\tSame\tDifferent", "Table 3.1:"),
    "thesis-3.2": ("Table 3.2:", "able to meaningfully match"),
    "thesis-3.3": ("Table 3.3:", "Table 3.4:"),
    "thesis-3.4": ("Table 3.4:", "Table 3.5:"),
    "thesis-3.5": ("Table 3.5:", "Figure 3.6"),
    "thesis-3.6": ("Table 3.6:", "Figure 3.7"),
    "thesis-3.7": ("Table 3.7:", "which even continues"),
    "thesis-4.1": ("Table 4.1:", "DINO's features stand apart"),
    "thesis-4.2": ("Table 4.1:", "DINO's features stand apart"),
    "thesis-4.3": ("Table 4.3:", "the PLR over the baseline"),
    "thesis-4.4": ("Table 4.3:", "the PLR over the baseline"),
    "thesis-4.5": ("Table 4.5:", "of artefacts in and around"),
    "thesis-als": ("Figure 4.10:", "space which is evident"),
    "hsr-3": ("Table 3. FFHQ-140k", "HSR itself gives slightly"),
    "ghfeat-6": ("Table 6: Landmark detection", "5 Conclusion"),
    "ltgan-1": ("| DATASET | METHOD | FID |", "4.2 Results"),
    "ltgan-2": ("| SNDCGAN | StyleGAN |", "5 Discussion"),
    "ltgan-3": ("| A | E | G | S |", "Choice of hyper-parameter"),
    "ltgan-4": ("| Methods | CelebA-HQ |", "Comparison with SS-GAN"),
    "contrafeat-7": ("Model | Pooled | No-Foc | L2-Mask |", "Appendix E"),
    "contrafeat-8": ("Setting | Pooled |", "Appendix F"),
}

# Cells reconstructed from a damaged rendering: checked separately below.
RECONSTRUCTED = {("thesis-4.4", "PLR + HSR", "FID"), ("thesis-4.4", "PLR + HSR", "PPL")}

# Cells read by eye from the seed texts.
SPOT = [
    ("thesis-3.1", "DVE / 64", "Different", 2.38),
    ("thesis-3.1", "LEAD / 64", "Same", 0.51),
    ("thesis-3.1", "CL / 3840", "Different", 6.16),
    ("thesis-3.2", "LEAD", "AFLW_M", 6.23),
    ("thesis-3.2", "DVE Hourglass", "300W", 4.65),
    ("thesis-3.2", "Structural Repr.", "AFLW_R", 6.58),
    ("thesis-3.2", "RAR", "MAFL", None),
    ("thesis-3.3", "64 / none", "Different", 2.79),
    ("thesis-3.3", "128 / 256", "Same", 0.47),
    ("thesis-3.4", "CL / 128", "300W", 5.09),
    ("thesis-3.4", "LEAD / 256", "AFLW_R", 6.12),
    ("thesis-3.5", "LEAD / 64", "1", 21.8),
    ("thesis-3.5", "CL / 3840", "1 ±", 5.10),
    ("thesis-3.5", "LEAD / 3840", "100", 8.09),
    ("thesis-3.5", "LEAD / 128", "50 ±", 0.2),
    ("thesis-3.6", "CL / CL", "64", 7.86),
    ("thesis-3.6", "CL / LEAD", "256", 6.69),
    ("thesis-3.6", "LEAD / CL", "256", 7.41),
    ("thesis-3.7", "3840", "FLOPS", 2.21),
    ("thesis-3.7", "64", "FLOPS", 0.04),
    ("thesis-4.1", "ResNet50 DINO", "PPL", 55.6),
    ("thesis-4.1", "DeiT", "FID", 53.22),
    ("thesis-4.2", "Low-level", "PPL", 51.77),
    ("thesis-4.2", "Mid-level", "FID", 52.91),
    ("thesis-4.3", "LSUN-Church / SG2", "PPL", 916.15),
    ("thesis-4.3", "FFHQ-140k / SG2 + HSR", "FID", 3.72),
    ("thesis-4.3", "LSUN-Church / SG2 + HSR", "Recall", 0.41),
    ("thesis-4.4", "none", "PPL", 75.63),
    ("thesis-4.4", "HSR", "FID", 52.98),
    ("thesis-4.4", "PLR + HSR", "PPL", 48.02),
    ("thesis-4.5", "FFHQ-10k / StyleGAN2-ADA + HSR", "PPL", 126.35),
    ("thesis-4.5", "AnimalFace-Cat / StyleGAN2-ADA", "FID", 39.50),
    ("thesis-4.5", "CUB / StyleGAN2-ADA + HSR", "FID", 6.15),
    ("thesis-als", "SG2-ADA", "Hair", 1.96),
    ("thesis-als", "SG2-ADA + HSR", "Smile", 0.99),
    ("thesis-als", "SG2-ADA + HSR", "Mean", 1.32),
    ("hsr-3", "FFHQ-140k / SG2 + HSR", "FID", 3.74),
    ("hsr-3", "FFHQ-140k / SG2-ADA", "PPL", 163.11),
    ("hsr-3", "FFHQ-140k / SG2-ADA + HSR", "Precision", 0.70),
    ("ghfeat-6", "Cond. ImGen", "MSE", 4.95),
    ("ghfeat-6", "GH-Feat", "MSE", 5.12),
    ("ltgan-1", "CIFAR-10 (cond.) / CR+LT-BigGAN", "FID", 9.80),
    ("ltgan-1", "CelebA-HQ (uncond.) / CR-SNDCGAN", "FID", 16.97),
    ("ltgan-1", "ImageNet (cond.) / LT-BigGAN", "FID", 9.94),
    ("ltgan-2", "E", "SNDCGAN / LT-GAN", 88.53),
    ("ltgan-2", "S", "StyleGAN / Baseline", 64.75),
    ("ltgan-3", "A", "E / StyleGAN", 0.373),
    ("ltgan-3", "G", "S / LT-StyleGAN", -0.293),
    ("ltgan-3", "S", "A / StyleGAN", None),
    ("ltgan-4", "SS-GAN", "CelebA-HQ", 26.85),
    ("ltgan-4", "LT-GAN", "STL-10", 31.35),
    ("contrafeat-7", "Contra-Bi", "L2-Mask / clean", 0.357),
    ("contrafeat-7", "Contra-Pt", "Pooled / count", 11.0),
    ("contrafeat-8", "(a) Pure", "L2-Mask", -0.3977),
    ("contrafeat-8", "(b) Mixed", "No-Foc", -0.0577),
]

NUMBER = re.compile(r"-?\d+(?:\.\d*)?")


def seed_text(key):
    if not SEEDS.is_dir():
        pytest.skip(f"seed texts not found at {SEEDS} (a checkout without shared/seeds)")
    name = re.search(r"seeds/(\S+?\.txt)", get(key).source).group(1)
    return (SEEDS / name).read_text(encoding="utf-8")


def window(key):
    text = seed_text(key)
    start, end = WINDOWS[key]
    i = text.index(start)
    return text[i:text.index(end, i)]


def test_keys_are_the_documented_set():
    assert set(TABLES) == EXPECTED_KEYS
    assert set(WINDOWS) == EXPECTED_KEYS


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_table_is_well_formed(key):
    table = get(key)
    assert table.key == key
    assert table.rows and table.columns and table.caption and table.source
    assert len(set(table.columns)) == len(table.columns)
    for label, cells in table.rows.items():
        assert cells, f"{key}: empty row {label!r}"
        assert set(cells) <= set(table.columns), f"{key}: row {label!r} uses undeclared columns"
        assert all(v is None or isinstance(v, float) for v in cells.values())
    if table.lower_is_better is not None:
        assert set(table.lower_is_better) <= set(table.columns)
    if any(v is None for cells in table.rows.values() for v in cells.values()):
        assert table.notes, f"{key} has None cells but no notes saying why"


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_every_number_appears_in_the_seed_text_at_that_table(key):
    found = {float(s) for s in NUMBER.findall(window(key))}
    missing = [
        (row, col, v)
        for row, cells in get(key).rows.items()
        for col, v in cells.items()
        if v is not None and (key, row, col) not in RECONSTRUCTED and v not in found
    ]
    assert not missing, f"{key}: not in the seed text near its caption: {missing}"


# Rows whose cells are not contiguous in the extraction (side-by-side cells interleaved).
NOT_CONTIGUOUS = {
    ("thesis-4.4", "PLR + HSR"),
    ("thesis-4.5", "FFHQ-10k / StyleGAN2-ADA"), ("thesis-4.5", "FFHQ-10k / StyleGAN2-ADA + HSR"),
    ("thesis-4.5", "CUB / StyleGAN2-ADA"), ("thesis-4.5", "CUB / StyleGAN2-ADA + HSR"),
}


def _printed(v):
    """Regex for a cell as printed: 7.5 matches '7.5', '7.50'; 1.0 matches '1.'; None '-'."""
    if v is None:
        return "-"
    whole, _, frac = repr(v).partition(".")
    frac = frac.rstrip("0")
    return rf"(?<![\d.]){re.escape(whole)}\.{frac}0*(?!\d)"


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_each_row_reads_in_column_order_in_the_seed_text(key):
    # Guards against swapped columns: a row's cells appear in this order, separated by
    # non-digits only (tabs, '±', '/', '|', '(', markup).
    text = window(key)
    table = get(key)
    for row, cells in table.rows.items():
        if (key, row) in NOT_CONTIGUOUS:
            continue
        values = [cells.get(c) for c in table.columns]
        # a run of missing cells may be one printed '-' (LT-GAN Table 3 pairs two columns)
        values = [v for i, v in enumerate(values) if v is not None or i == 0 or values[i - 1] is not None]
        pattern = r"[^\d]*?".join(_printed(v) for v in values)
        assert re.search(pattern, text), f"{key}: row {row!r} not found in this order"


def test_reconstructed_cells_of_thesis_table_4_4():
    # The thesis prints the PLR + HSR row as '51 58' / '<u>/8 02'; the HSR paper's
    # Table 4 prints 51.58 and a truncated 48.0; the same run is ViT DINO in Table 4.1.
    assert "51 58" in window("thesis-4.4") and "/8 02" in window("thesis-4.4")
    assert re.search(r"51\.58\s+48\.0\b", window("hsr-3"))
    assert get("thesis-4.4").rows["PLR + HSR"] == get("thesis-4.1").rows["ViT DINO"]
    assert get("thesis-4.4").rows["PLR + HSR"] == {"FID": 51.58, "PPL": 48.02}


@pytest.mark.parametrize("key,row,col,value", SPOT)
def test_spot_checks(key, row, col, value):
    assert get(key).rows[row][col] == value


def test_thesis_row_labels_for_chapters():
    assert list(get("thesis-4.1").rows) == [
        "StyleGAN2-ADA", "ViT (RandInit)", "ResNet50 DINO", "DeiT", "ResNet50", "ViT DINO"]
    assert list(get("thesis-4.2").rows)[1:] == ["High-level", "Mid-level", "Low-level", "All levels"]
    assert list(get("thesis-4.4").rows) == ["none", "PLR", "HSR", "PLR + HSR"]
    assert get("thesis-3.1").columns == ("Same", "Different")


def test_shared_runs_agree_across_tables():
    # The AnimalFace-Dog baseline / ViT-DINO HSR run appears in Tables 4.1, 4.2, 4.4, 4.5.
    base, hsr = {"FID": 53.28, "PPL": 59.27}, {"FID": 51.58, "PPL": 48.02}
    assert get("thesis-4.1").rows["StyleGAN2-ADA"] == base == get("thesis-4.4").rows["PLR"]
    assert get("thesis-4.2").rows["All levels"] == hsr
    assert get("thesis-4.5").rows["AnimalFace-Dog / StyleGAN2-ADA + HSR"] == hsr
    # LEAD/LEAD of Table 3.6 is LEAD's AFLW_M column of Table 3.4.
    t34 = get("thesis-3.4").rows
    assert [t34[f"LEAD / {d}"]["AFLW_M"] for d in (64, 128, 256)] == list(
        get("thesis-3.6").rows["LEAD / LEAD"].values())


def test_get_unknown_key_lists_the_available_keys():
    with pytest.raises(KeyError) as err:
        get("thesis-9.9")
    message = str(err.value)
    assert "thesis-9.9" in message
    assert all(key in message for key in EXPECTED_KEYS)


def test_as_frame_shape_labels_and_missing_values():
    frame = as_frame("thesis-3.2")
    table = get("thesis-3.2")
    assert frame.shape == (len(table.rows), len(table.columns))
    assert list(frame.index) == list(table.rows) and list(frame.columns) == list(table.columns)
    assert frame.loc["LEAD", "AFLW_R"] == 5.65
    assert math.isnan(frame.loc["Wing Loss", "MAFL"])
    assert frame.attrs["source"] == table.source


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_as_frame_shape_every_table(key):
    table = get(key)
    assert as_frame(key).shape == (len(table.rows), len(table.columns))


def test_reftable_rejects_undeclared_columns():
    with pytest.raises(ValueError, match="undeclared"):
        reference.RefTable(key="x", source="s", caption="c", columns=("A",), rows={"r": {"B": 1.0}})


def test_beside_pairs_paper_and_our_columns():
    from ssl_lab.reference import beside
    f = beside("thesis-3.3", {"64 / none": {"Same": 10.0, "Different": 20.0},
                              "32 / none": {"Same": 1.0, "Different": 2.0}})
    assert list(f.columns) == [("Same", "thesis"), ("Same", "ours"),
                               ("Different", "thesis"), ("Different", "ours")]
    assert f.loc["64 / none", ("Different", "thesis")] == 2.79
    assert f.loc["64 / none", ("Different", "ours")] == 20.0
    assert list(f.index)[-1] == "32 / none" and math.isnan(f.loc["32 / none", ("Same", "thesis")])
    assert math.isnan(f.loc["256 / 256", ("Same", "ours")])


def test_beside_labels_a_stand_in_metric_by_its_own_name():
    from ssl_lab.reference import beside
    f = beside("thesis-4.4", {"none": {"FD_x": 3.0, "PPL": 4.0}}, rename={"FID": "FD_x"})
    assert list(f.columns) == [("FID", "thesis"), ("FID", "ours: FD_x"), ("PPL", "thesis"), ("PPL", "ours")]
    assert f.loc["none", ("FID", "ours: FD_x")] == 3.0 and f.loc["none", ("FID", "thesis")] == 57.97
