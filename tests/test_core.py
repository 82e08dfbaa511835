"""scales, zoo, results, paths, cli: the plumbing every chapter relies on."""
import json

import pytest
import torch

from ssl_lab import paths, results, scales, zoo
from ssl_lab.cli import main as cli




def test_scales():
    assert scales.get("smoke").face_size < scales.get("small").face_size
    assert scales.get("full").real_data and not scales.get("small").real_data
    assert set(scales.SMOKE.sizes) == set(scales.SMALL.sizes) == set(scales.FULL.sizes)
    with pytest.raises(ValueError, match="choose one of"):
        scales.get("huge")


def test_atomic_save_leaves_nothing_behind_on_failure(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")
    with pytest.raises(RuntimeError):
        paths.atomic_save({"x": Boom()}, tmp_path / "a.pt")
    assert list(tmp_path.iterdir()) == []
    paths.atomic_save({"x": 1}, tmp_path / "a.pt")
    assert torch.load(tmp_path / "a.pt") == {"x": 1} and len(list(tmp_path.iterdir())) == 1


CALLS = []


@zoo.register("test/mean", {"smoke": {"n": 4}, "small": {"n": 8}, "full": {"n": 16}},
              build=lambda art, device: art["value"])
def _train_mean(cfg, device, seed):
    CALLS.append((cfg["n"], seed))
    g = torch.Generator().manual_seed(seed)
    return {"value": torch.rand(cfg["n"], generator=g).mean().item()}


def test_zoo_trains_once_then_reads_the_cache(home):
    CALLS.clear()
    a = zoo.get("test/mean", "smoke")
    b = zoo.get("test/mean", "smoke")
    assert a == b and CALLS == [(4, 0)]
    assert zoo.get("test/mean", "smoke", seed=1) != a and CALLS[-1] == (4, 1)
    zoo.get("test/mean", "smoke", n=5)
    assert CALLS[-1] == (5, 0)                        # overrides change the key
    meta = zoo.info("test/mean", "smoke")
    assert meta["config"] == {"n": 4} and meta["wall_time_s"] >= 0
    zoo.get("test/mean", "smoke", retrain=True)
    assert len(CALLS) == 4


def test_zoo_errors_are_clear(home):
    with pytest.raises(KeyError, match="unknown recipe"):
        zoo.get("nope")
    with pytest.raises(KeyError, match="unknown config keys"):
        zoo.get("test/mean", "smoke", lr=1)
    with pytest.raises(FileNotFoundError, match="python -m ssl_lab train test/mean --scale full"):
        zoo.get("test/mean", "full")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.get("test/mean", "full", checkpoint=home / "missing.pt")
    path = zoo.train("test/mean", "full")
    assert zoo.get("test/mean", "full", checkpoint=path) == zoo.get("test/mean", "full")


def test_results_roundtrip_and_best(tmp_path):
    rows = {"LEAD / 64": {"Same": 2.5, "Different": 4.25}}
    for scale, tag in (("smoke", "a"), ("small", "b")):
        rec = results.make_record("lead/matching", scale, "thesis-3.1", rows, tag=tag, seeds=[0, 1],
                                  wall_time_s=12.345, parameters={"dim": 64},
                                  stand_ins={"ResNet-50": "resnet18"})
        path = results.save(rec, root=tmp_path)
    assert path == tmp_path / "lead/matching/small-b.json"
    on_disk = json.loads(path.read_text())
    for key in ("chapter", "scale", "device", "torch", "commit", "date", "seeds", "wall_time_s",
                "parameters", "stand_ins", "table", "rows"):
        assert key in on_disk
    assert on_disk["rows"] == rows and on_disk["wall_time_s"] == 12.3
    assert len(results.load_all("lead/matching", root=tmp_path)) == 2
    assert results.best("lead/matching", "thesis-3.1", root=tmp_path)["scale"] == "small"
    assert results.best("lead/matching", "thesis-3.3", root=tmp_path) is None
    with pytest.raises(ValueError, match="scale"):
        results.make_record("x", "medium", "t", rows)
    with pytest.raises(TypeError, match="row 'r'"):
        results.make_record("x", "small", "t", {"r": 1.0})


def test_across_seeds_pools_one_budget_and_keeps_the_newest_record_per_seed(tmp_path):
    clock = iter(range(10, 60))

    def rec(seed, fd, tag, steps=10, scale="small"):
        r = results.make_record("hsr/x", scale, "thesis-4.4", {"none": {"FD": fd, "PPL": 2.0 * fd}},
                                tag=tag, seeds=[seed], parameters=dict(steps=steps))
        r["date"] = f"2026-01-01T00:00:{next(clock)}+00:00"  # written in this order
        results.save(r, root=tmp_path)

    assert results.across_seeds("hsr/x", "thesis-4.4", root=tmp_path) is None
    rec(0, 9.0, "old0")           # superseded by the newer record of seed 0
    rec(0, 1.0, "seed0")
    rec(1, 3.0, "seed1")
    rec(2, 99.0, "other", steps=20)  # another budget: not pooled with the newest...
    rec(2, 5.0, "seed2")             # ...which is this one (steps=10)
    rec(3, 70.0, "smoke3", scale="smoke")
    agg = results.across_seeds("hsr/x", "thesis-4.4", root=tmp_path)
    assert agg["scale"] == "small" and agg["seeds"] == [0, 1, 2]
    assert agg["mean"]["none"]["FD"] == pytest.approx(3.0)          # (1 + 3 + 5) / 3
    assert agg["std"]["none"]["FD"] == pytest.approx(2.0)           # sample std of 1, 3, 5
    assert agg["mean"]["none"]["PPL"] == pytest.approx(6.0)
    assert [r["tag"] for r in agg["records"]] == ["seed0", "seed1", "seed2"]


def test_cli_lists_splits_and_results(capsys):
    cli(["splits", "--scale", "small"])
    out = capsys.readouterr().out
    assert "mafl/test" in out and "1000" in out and "300w/train" in out
    cli(["results", "no/such-chapter"])
    assert "no recorded runs for no/such-chapter" in capsys.readouterr().out


def test_zoo_key_changes_with_the_split_definitions(home, monkeypatch):
    from dataclasses import replace
    from ssl_lab.data import splits
    before = zoo.cache_path("test/mean", "smoke")
    spec = splits.SPECS["celeba"]
    monkeypatch.setitem(splits.SPECS, "celeba", replace(spec, cfg=replace(spec.cfg, face_scale=0.5)))
    assert zoo.cache_path("test/mean", "smoke") != before
