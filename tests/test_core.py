"""scales, zoo, results, paths, cli: the plumbing every chapter relies on."""
import json
import math
from pathlib import Path

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


def test_a_changed_record_does_not_mark_the_next_record_dirty_but_changed_code_does(tmp_path):
    import subprocess
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    for f, text in (("results/lead/x/small-seed0.json", "{}"), ("results/zoo/r/a.json", "{}"),
                    ("results/zoo/r/a.pt", "w"), ("ssl_lab/m.py", "x = 1")):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    clean = results.git_commit(tmp_path)
    assert clean and "+dirty" not in clean and clean != "unknown"
    (tmp_path / "results/lead/x/small-seed0.json").write_text('{"a": 1}')     # a record rewritten
    (tmp_path / "results/zoo/r/a.json").write_text('{"a": 1}')                # a manifest
    (tmp_path / "notes.txt").write_text("untracked")
    assert results.git_commit(tmp_path) == clean
    (tmp_path / "results/zoo/r/a.pt").write_text("v")                        # weights count
    assert results.git_commit(tmp_path) == clean + "+dirty"
    git("checkout", "-q", "results/zoo/r/a.pt")
    (tmp_path / "ssl_lab/m.py").write_text("x = 2")                           # code counts
    assert results.git_commit(tmp_path) == clean + "+dirty"


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
    assert agg["n"]["none"] == {"FD": 3, "PPL": 3}
    # a row only some seeds hold (a study trained variant by variant) pools those seeds
    r = results.make_record("hsr/x", "small", "thesis-4.4", {"none": {"FD": 7.0, "PPL": 14.0}, "HSR": {"FD": 4.0}},
                            tag="seed1b", seeds=[1], parameters=dict(steps=10))
    r["date"] = f"2026-01-01T00:00:{next(clock)}+00:00"
    results.save(r, root=tmp_path)
    agg = results.across_seeds("hsr/x", "thesis-4.4", root=tmp_path)
    assert list(agg["mean"]) == ["none", "HSR"] and agg["mean"]["none"]["FD"] == pytest.approx(13 / 3)
    assert agg["mean"]["HSR"] == {"FD": 4.0} and agg["n"]["HSR"] == {"FD": 1}
    assert math.isnan(agg["std"]["HSR"]["FD"])


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


# -- the shipped zoo -----------------------------------------------------------------------------
@zoo.register("test/weights", {"smoke": {"n": 3, "lr": 0.1}},
              build=lambda art, device: art["state_dict"]["w"])
def _train_weights(cfg, device, seed):
    CALLS.append(("weights", cfg["n"], seed))
    g = torch.Generator().manual_seed(seed)
    return {"state_dict": {"w": torch.rand(cfg["n"], generator=g), "steps": torch.tensor(7)},
            "history": [3.0, 2.0, 1.0], "images_per_s": 12.5, "state": {"optimiser": torch.ones(1000)}}


def test_shipped_artefact_comes_before_the_cache_and_is_stored_compactly(home):
    path = zoo.ship("test/weights", "smoke", seed=2)
    assert path.parent == zoo.zoo_dir() / "test" / "weights" and path.name == "smoke-seed2.pt"
    raw = torch.load(path, weights_only=False)
    assert raw["state_dict"]["w"].dtype == torch.float16 and "state" not in raw   # halved, state dropped
    assert raw["state_dict"]["steps"].dtype == torch.int64
    m = json.loads(path.with_suffix(".json").read_text())
    assert m["key"] == zoo.key("test/weights", "smoke", 2) and m["sha256"] == zoo.sha256(path)
    assert m["loss_curve"] == [3.0, 2.0, 1.0] and m["images_per_s"] == 12.5 and m["seed"] == 2
    assert m["command"] == "python -m ssl_lab train test/weights --scale smoke --seed 2 --ship"
    for p in (home / "zoo").rglob("*.pt"):                 # the cache goes: the shipped file serves
        p.unlink()
    CALLS.clear()
    w = zoo.get("test/weights", "smoke", seed=2)
    g = torch.Generator().manual_seed(2)
    expect = torch.rand(3, generator=g)
    assert CALLS == [] and w.dtype == torch.float32 and torch.allclose(w, expect, atol=1e-3)
    assert torch.equal(w, expect.half().float())           # exactly the float16 round trip
    assert zoo.info("test/weights", "smoke", seed=2)["sha256"] == m["sha256"]


@zoo.register("test/warmup", {"smoke": {"n": 3}}, ship_state=True)
def _train_warmup(cfg, device, seed):
    CALLS.append(("warmup", cfg["n"], seed))
    g = torch.Generator().manual_seed(seed)
    return {"G": torch.rand(cfg["n"], generator=g), "state": {"D": torch.rand(cfg["n"], generator=g)},
            "snapshots": [torch.rand(cfg["n"], generator=g)]}


def test_a_recipe_that_ships_its_state_branches_from_the_shipped_zoo(home, monkeypatch):
    path = zoo.ship("test/warmup", "smoke")
    state = path.with_name("smoke-seed0.state.pt")
    m = json.loads(path.with_suffix(".json").read_text())
    assert m["state_file"] == state.name and m["state_sha256"] == zoo.sha256(state)
    assert not {"state", "snapshots"} & set(torch.load(path, weights_only=False))   # evaluation file
    assert set(torch.load(state, weights_only=False)) == {"state"}          # resuming needs no snapshots
    expect = torch.load(state, weights_only=False)["state"]["D"]
    for p in (home / "zoo").rglob("*.pt"):                                  # no cache: only the zoo
        p.unlink()
    monkeypatch.setenv("SSL_LAB_TRAIN", "never")
    CALLS.clear()
    art = zoo.load("test/warmup", "smoke", with_state=True)
    assert CALLS == [] and torch.equal(art["state"]["D"], expect)           # exact: float32 kept
    assert expect.dtype == torch.float32
    assert "state" not in zoo.load("test/warmup", "smoke")
    zoo.restore_shipped("test/warmup", "smoke")                          # stored anew: the state is unchanged
    assert torch.equal(zoo.load("test/warmup", "smoke", with_state=True)["state"]["D"], expect)
    state.write_bytes(state.read_bytes()[:-4])
    with pytest.raises(zoo.CorruptArtefact, match="training state .* missing or corrupt"):
        zoo.load("test/warmup", "smoke", with_state=True)
    # a recipe that does not ship its state: with_state skips the shipped file for the cache
    zoo.ship("test/weights", "smoke")
    zoo.cache_path("test/weights", "smoke").unlink()
    assert "state_dict" in zoo.load("test/weights", "smoke")
    with pytest.raises(zoo.MissingArtefact, match="test/weights"):
        zoo.load("test/weights", "smoke", with_state=True)


@zoo.register("test/student", {"smoke": {"n": 2}}, inputs=lambda scale, seed, cfg: [("test/weights", scale, seed, {})])
def _train_student(cfg, device, seed):
    teacher = zoo.get("test/weights", "smoke", seed=seed)
    return {"w": teacher[: cfg["n"]] * 2}


def test_an_artefact_is_stale_when_an_input_it_was_trained_from_changed(home, monkeypatch):
    path = zoo.ship("test/student", "smoke")
    m = json.loads(path.with_suffix(".json").read_text())
    assert m["inputs"] == [dict(recipe="test/weights", scale="smoke", seed=0, overrides={},
                                key=zoo.key("test/weights", "smoke"))]
    assert zoo.info("test/student", "smoke", cached=True)["inputs"] == m["inputs"]   # recorded at training
    assert zoo.shipped_manifest("test/student", "smoke") is not None
    monkeypatch.setitem(zoo.RECIPES["test/weights"].configs, "smoke", {"n": 3, "lr": 0.2})   # the teacher changes
    for p in (home / "zoo").rglob("*.pt"):
        p.unlink()
    monkeypatch.setenv("SSL_LAB_TRAIN", "never")
    assert zoo.shipped_manifest("test/student", "smoke") is None
    with pytest.raises(zoo.MissingArtefact, match=r"stale \(trained from inputs that have changed since: "
                       r"test/weights smoke-seed0 \w{10} -> \w{10}\)"):
        zoo.get("test/student", "smoke")
    assert zoo.inputs("test/mean", "smoke") == []                    # a recipe that declares none


def test_slots_name_only_the_overrides_that_differ(home):
    assert zoo.slot("test/weights", "smoke", 0, n=3) == "smoke-seed0"
    assert zoo.slot("test/weights", "smoke", 1, n=5, lr=0.1) == "smoke-seed1-n=5"
    assert zoo.train_command("test/weights", "smoke", 1, n=5) == \
        "python -m ssl_lab train test/weights --scale smoke --seed 1 --set n=5 --ship"


def test_a_stale_or_missing_artefact_is_a_clear_error_when_training_is_off(home, monkeypatch):
    from dataclasses import replace
    from ssl_lab.data import splits
    zoo.ship("test/weights", "smoke")
    monkeypatch.setenv("SSL_LAB_TRAIN", "never")
    monkeypatch.setitem(zoo.RECIPES["test/weights"].configs, "smoke", {"n": 3, "lr": 0.2})
    for p in (home / "zoo").rglob("*.pt"):
        p.unlink()
    with pytest.raises(zoo.MissingArtefact, match=r"stale \(config changed: lr 0.1 -> 0.2\).*"
                       r"python -m ssl_lab train test/weights --scale smoke --seed 0 --ship"):
        zoo.get("test/weights", "smoke")
    monkeypatch.setitem(zoo.RECIPES["test/weights"].configs, "smoke", {"n": 3, "lr": 0.1})
    spec = splits.SPECS["celeba"]
    monkeypatch.setitem(splits.SPECS, "celeba", replace(spec, cfg=replace(spec.cfg, face_scale=0.5)))
    with pytest.raises(zoo.MissingArtefact, match="split definitions changed"):
        zoo.get("test/weights", "smoke")
    monkeypatch.setattr(splits, "RENDERER_VERSION", "v-next")
    with pytest.raises(zoo.MissingArtefact, match="SynthFaces renderer .* -> 'v-next'"):
        zoo.get("test/weights", "smoke")
    with pytest.raises(zoo.MissingArtefact, match="nothing is shipped at .*smoke-seed4.pt"):
        zoo.get("test/weights", "smoke", seed=4)
    rows = {r["slot"]: r["status"] for r in zoo.listing([("test/weights", "smoke", 4, {})])}
    assert rows["smoke-seed0"].startswith("stale: SynthFaces renderer") and rows["smoke-seed4"] == "missing"


def test_a_corrupt_shipped_file_is_an_error_never_a_retrain(home):
    path = zoo.ship("test/weights", "smoke")
    path.write_bytes(path.read_bytes()[:-10])               # truncated
    CALLS.clear()
    with pytest.raises(zoo.CorruptArtefact, match="corrupt or truncated.*git checkout"):
        zoo.get("test/weights", "smoke")
    assert CALLS == []
    assert [r["status"] for r in zoo.listing()] == ["corrupt (sha256 differs)"]


def test_the_cli_ships_and_lists(home, capsys):
    cli(["train", "test/weights", "--scale", "smoke", "--seed", "1", "--set", "n=5", "--ship"])
    assert (zoo.zoo_dir() / "test" / "weights" / "smoke-seed1-n=5.pt").exists()
    cli(["zoo", "--scale", "full"])
    out = capsys.readouterr().out
    assert "smoke-seed1-n=5" in out and " ok " in out and "shipped zoo" in out


def test_the_book_finds_every_artefact_it_loads_shipped_and_current():
    """The chapters evaluate only shipped artefacts: each one a chapter loads at its default
    scale is in results/zoo with a current key and an intact file; the zoo holds nothing else,
    and stays under the design's 100 MB."""
    from ssl_lab import recipes
    book = Path(__file__).resolve().parents[1] / "book"
    chapters = [str(nb.relative_to(book).with_suffix("")) for nb in sorted(book.rglob("*.ipynb"))
                if ".ipynb_checkpoints" not in nb.parts]
    loading = [c for c in chapters if recipes.chapter_artefacts(c, recipes.default_scale(c))]
    assert sorted(loading) == sorted(recipes.CHAPTERS)
    needed = recipes.book_artefacts()
    missing = [zoo.train_command(n, s, sd, **ov) for n, s, sd, ov in needed
               if zoo.shipped_manifest(n, s, sd, **ov) is None]
    assert not missing, "not shipped or stale; make them with:\n" + "\n".join(missing)
    bad = [r for r in zoo.listing() if r["status"] != "ok"]
    assert not bad, bad
    wanted = {zoo.shipped_path(n, s, sd, **ov).resolve() for n, s, sd, ov in needed}
    extra = [p for p in zoo.zoo_dir().rglob("*.pt") if not p.name.endswith(".state.pt") and p.resolve() not in wanted]
    assert not extra, f"shipped but loaded by no chapter at its default scale: {extra}"
    size = sum(p.stat().st_size for p in zoo.zoo_dir().rglob("*") if p.is_file())
    assert size < 100e6


def test_recorded_runs_leave_out_the_shipped_zoo(tmp_path):
    rec = results.make_record("lead/x", "small", "thesis-3.1", {"a": {"Same": 1.0}}, tag="seed0")
    results.save(rec, root=tmp_path)
    (tmp_path / "zoo" / "lead" / "stage1-byol").mkdir(parents=True)
    (tmp_path / "zoo" / "lead" / "stage1-byol" / "small-seed0.json").write_text('{"recipe": "lead/stage1-byol"}')
    assert [r["chapter"] for r in results.load_all(root=tmp_path)] == ["lead/x"]


def test_spread_verdict_by_hand():
    from ssl_lab.results import spread_verdict
    assert spread_verdict([4, 5, 6], [0, 1, 2], "A", "B") == "B ahead beyond 2 standard deviations"
    assert spread_verdict([0, 1, 2], [4, 5, 6], "A", "B", k=3) == "A ahead beyond 3 standard deviations"
    assert spread_verdict([0, 2, 4], [3, 4, 5], "A", "B") == "within 2 standard deviations: not a finding"
    assert spread_verdict([1.0], [5, 6], "A", "B").startswith("fewer than two seeds")


def test_noise_and_spread_verdict_by_hand():
    from ssl_lab.results import noise_and_spread_verdict as v
    # means 5 and 1: 4 apart; the sampling noise must be under 2 (k = 2) before the spread is asked
    assert v([4, 5, 6], [0, 1, 2], "A", "B", noise_sd=2.0).startswith("within 2 standard deviations of the sampling")
    assert v([4, 5, 6], [0, 1, 2], "A", "B", noise_sd=1.9) == "B ahead beyond 2 standard deviations"
    assert v([0, 2, 4], [3, 4, 5], "A", "B", noise_sd=0.1) == "within 2 standard deviations: not a finding"
    assert v([1.0], [5.0], "A", "B", noise_sd=0.1).startswith("fewer than two seeds")
    assert v([], [], "A", "B", noise_sd=0.1).startswith("fewer than two seeds")


def test_beyond_spread_by_hand():
    from ssl_lab.results import beyond_spread
    # means 1 and 5, sds 1 and 1 (ddof 1 of (0, 1, 2) and (4, 5, 6)): |4| > 2 x 1
    assert beyond_spread([0, 1, 2], [4, 5, 6]) is True
    assert beyond_spread([0, 1, 2], [4, 5, 6], k=4.0) is False             # |4| > 4 x 1 fails
    assert beyond_spread([0, 2, 4], [3, 4, 5]) is False                    # sd 2: |1| < 4
    assert beyond_spread([1.0], [5, 6]) is None                            # one seed: no spread


def test_int8_storage_by_hand_and_round_trip():
    # one output channel: max |w| = 127 -> scale 1, so the integers come back exactly
    w = torch.arange(-127.0, 127.0 + 1).repeat(8, 1)[:, :1024 // 8 + 1]   # (8, 129): >= 1024 values
    w[1] *= 0.5                                                           # scale 0.5 on row 1
    packed = zoo._compact({"w": w, "b": torch.ones(8), "n": torch.tensor(3)}, int8=True)
    assert packed["w"][zoo._INT8].dtype == torch.int8 and packed["b"].dtype == torch.float16
    assert torch.allclose(packed["w"]["scale"][:2], torch.tensor([1.0, 0.5]))
    back = zoo._restore(packed)
    assert torch.equal(back["w"], w) and back["b"].dtype == torch.float32 and back["n"].item() == 3
    g = torch.Generator().manual_seed(0)
    conv = torch.randn(64, 32, 3, 3, generator=g)
    err = (zoo._restore(zoo._compact(conv, int8=True)) - conv).abs()
    per_channel_step = conv.abs().flatten(1).amax(1) / 127
    assert (err <= per_channel_step.view(-1, 1, 1, 1) / 2 + 1e-6).all()  # within half a step
    small = torch.randn(4, 4, generator=g)                               # under 1024 values: float16
    assert zoo._compact(small, int8=True).dtype == torch.float16


def test_shipped_files_are_deflated_and_load_as_saved(tmp_path):
    import zipfile
    from ssl_lab.paths import atomic_save, atomic_save_deflated
    obj = {"q": torch.randint(-3, 4, (64, 1024), dtype=torch.int8), "x": torch.randn(7), "meta": {"n": 3}}
    plain, packed = atomic_save(obj, tmp_path / "a.pt"), atomic_save_deflated(obj, tmp_path / "b.pt")
    with zipfile.ZipFile(packed) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    assert packed.stat().st_size < plain.stat().st_size / 2          # 7 values of 256: about 3 bits a byte
    back = torch.load(packed, weights_only=False)
    assert torch.equal(back["q"], obj["q"]) and torch.equal(back["x"], obj["x"]) and back["meta"] == {"n": 3}
    assert not list(tmp_path.glob(".*"))                              # no temporary file left behind


def test_a_recipe_stored_as_int8_ships_int8(home):
    zoo.register("test/int8", {"smoke": {"n": 2048}}, store="int8")(
        lambda cfg, device, seed: {"state_dict": {"w": torch.randn(2, cfg["n"] // 2)}})
    path = zoo.ship("test/int8", "smoke")
    raw = torch.load(path, weights_only=False)
    assert raw["state_dict"]["w"][zoo._INT8].dtype == torch.int8
    assert json.loads(path.with_suffix(".json").read_text())["stored"] == zoo.STORES["int8"]
    assert zoo.get("test/int8", "smoke")["state_dict"]["w"].dtype == torch.float32
    with pytest.raises(ValueError, match="store must be"):
        zoo.register("test/bad", {"smoke": {}}, store="int4")


def test_cli_run_checks_its_inputs_before_executing(tmp_path, monkeypatch):
    """`run` finds a chapter by name, and refuses a missing chapter, a full-scale run without a
    data root and a --zoo that is not a folder before any cell executes."""
    import papermill
    from ssl_lab.cli import chapter_notebook
    assert chapter_notebook("lead/matching") == paths.repo_root() / "book" / "lead" / "matching.ipynb"
    assert chapter_notebook("book/lead/matching.ipynb").name == "matching.ipynb"
    import os
    ran = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: ran.append((a, k)))
    # `run --zoo` sets SSL_LAB_ZOO for the kernel it starts: give it a copy of the environment,
    # so that nothing after this test (e.g. nbval's kernels) reads the temporary zoo
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "SSL_LAB_ZOO"})
    for argv, says in ((["run", "lead/nowhere"], "no such chapter"),
                       (["run", "lead/matching", "--scale", "full"], "--data-root"),
                       (["run", "lead/matching", "--scale", "full", "--data-root", str(tmp_path / "x")], "not a folder"),
                       (["run", "lead/matching", "--zoo", str(tmp_path / "nozoo")], "not a folder")):
        with pytest.raises(SystemExit, match=says):
            cli(argv)
    assert ran == []
    (tmp_path / "zoo").mkdir()
    cli(["run", "lead/matching", "--scale", "full", "--data-root", str(tmp_path), "--zoo", str(tmp_path / "zoo"),
         "--out", str(tmp_path / "out.ipynb")])
    (nb, out), kw = ran[0]
    assert nb.endswith("matching.ipynb") and out == str(tmp_path / "out.ipynb")
    assert kw["parameters"] == dict(scale="full", device="cpu", seed=0, data_root=str(tmp_path))
    assert os.environ["SSL_LAB_ZOO"] == str((tmp_path / "zoo").resolve())


def test_cli_plan_lists_what_a_chapter_loads_in_training_order(capsys, monkeypatch):
    """`plan`: teachers and warm-ups before what loads them, data-parallel recipes under torchrun
    (the others in one process), the weights files of the full-scale HSR and ALS chapters, what has
    no config at that scale, and last the `run` command."""
    from ssl_lab import recipes
    from ssl_lab.recipes import training_plan
    from ssl_lab.regression import (FEW_ANNOTATIONS, FEW_DRAWS, FIG_3_9, TABLE_3_2, TABLE_3_4, TABLE_3_5, TABLE_3_6,
                                    TABLE_3_6_DIMS)
    dims = {row.format(c) for row in TABLE_3_6.values() for c in TABLE_3_6_DIMS}
    for page, n_nets, n_fits in (
            ("lead/regression", 5, len({(row, s) for row, sets in TABLE_3_2.items() for s in sets}) + len(FIG_3_9)),
            ("lead/regression_ablations", 15,
             len({(row, s) for row, sets in TABLE_3_4.items() for s in sets} | {(r, "aflw_m") for r in dims})
             + len(TABLE_3_5) * len(FEW_ANNOTATIONS) * len(FEW_DRAWS["full"]))):
        reg = training_plan(page, "full", gpus=2, data_root="/data")
        trained = [line.split(" train ")[1].split(" --scale")[0] for line in reg if " train " in line]
        nets = [t for t in trained if t.startswith("lead/stage")]
        assert trained[:len(nets)] == nets and len(nets) == n_nets      # networks first, then the regressors
        for teacher, students in (("lead/stage1-moco", ("lead/stage2-cl", "lead/stage2-lead-from-moco")),
                                  ("lead/stage1-byol", ("lead/stage2-dve", "lead/stage2-lead", "lead/stage2-cl-from-byol"))):
            assert nets.index(teacher) < min(i for i, t in enumerate(nets) if t in students)
        assert all(line.startswith("torchrun --nproc_per_node 2 -m ssl_lab train lead/stage") for line in reg[:n_nets])
        assert all(line.startswith("python -m ssl_lab train lead/regressor") for line in reg[n_nets:-1])
        assert len(reg[n_nets:-1]) == n_fits
        assert all("--data-root /data" in line and "--ship" not in line for line in reg)
        assert reg[-1] == f"python -m ssl_lab run {page} --scale full --device cuda --seed 0 --data-root /data"
    hsr = training_plan("hsr/design_choices", "full", gpus=4)
    assert "# put dino_vitbase16_pretrain.pth under DATA/weights/ (see HSR_FULL_NETWORKS)" in hsr
    assert "# put pt_inception-2015-12-05-6726825d.pth under DATA/weights/ (see ssl_lab.nets.extractors)" in hsr
    trains = [line for line in hsr if " train " in line]          # full: FID's Inception, no FD stand-in
    assert "hsr/warmup" in trains[0] and all("hsr/branch" in t for t in trains[1:]) and len(trains) == 12
    assert not any("lead/supervised" in line for line in hsr)
    assert not any("vit-dino" in line or "stage1-byol" in line for line in hsr)   # no stand-ins at full
    als = training_plan("hsr/latent_linearity", "full")           # full: the CelebA-HQ classifiers' files
    assert als[0] == "# put celebahq-classifier-00-male.pkl under DATA/weights/ (see ssl_lab.nets.celebahq_classifier)"
    assert sum(line.startswith("# put celebahq-classifier-") for line in als) == 6
    assert not any("not available" in line or "als/classifier" in line or "lead/supervised" in line for line in als)
    with monkeypatch.context() as m:                               # an artefact without a config at that scale
        m.setattr(recipes, "chapter_artefacts", lambda chapter, scale, seed=0: [("hsr/vit-dino", scale, seed, {})])
        assert training_plan("hsr/method", "full")[-2].startswith(
            "# not available: recipe 'hsr/vit-dino' has no config for scale 'full'")
    small = training_plan("hsr/latent_linearity", "small", device="cpu")
    order = [line.split(" train ")[1].split(" --scale")[0] for line in small if " train " in line]
    assert order.index("hsr/warmup") < order.index("hsr/branch") and order.index("lead/stage1-byol") < len(order) - 1
    assert all(line.endswith("--ship --device cpu") for line in small if " train " in line)
    cli(["plan", "lead/matching", "--scale", "full", "--gpus", "2", "--data-root", "/d"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# lead/matching at scale full") and out[-1].startswith("python -m ssl_lab run lead/matching")


def test_the_full_scale_page_shows_what_plan_prints():
    """The matching chapter's plan printed on the full-scale page is the code's own output, and
    the page counts the regression chapter's regressors as its plan does."""
    from ssl_lab.recipes import training_plan
    page = (paths.repo_root() / "book" / "foundations" / "full_scale.md").read_text()
    block = page.split("For the matching chapter:\n\n```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == training_plan("lead/matching", "full", gpus=2, data_root="/data")
    reg = training_plan("lead/regression", "full", gpus=2, data_root="/data")
    ablations = training_plan("lead/regression_ablations", "full", gpus=2, data_root="/data")
    count = lambda plan, recipe: sum(f"train {recipe} " in line for line in plan)
    text = " ".join(page.split())
    assert f"`lead/regressor` per feature row and role set ({count(reg, 'lead/regressor')} commands)" in text
    assert (f"its ablations page needs {count(ablations, 'lead/regressor')} regressors of Tables 3.4 and 3.6 and one "
            f"`lead/regressor-few` per row, annotation budget and draw of Table 3.5 "
            f"({count(ablations, 'lead/regressor-few')} commands)") in text


def test_beyond_noise_by_hand():
    from ssl_lab.results import beyond_noise
    # se 0.3 and 0.4: bound 2 * 0.5 = 1.0
    assert beyond_noise(10.0, 0.3, 11.1, 0.4) == -1 and beyond_noise(11.1, 0.3, 10.0, 0.4) == 1
    assert beyond_noise(10.0, 0.3, 10.9, 0.4) == 0 and beyond_noise(10.0, 0.0, 10.0, 0.0) == 0
    assert beyond_noise(10.0, 0.3, 10.9, 0.4, k=1.0) == -1


def test_ordering_of_rows_by_hand():
    from ssl_lab.results import ordering
    rows = {"a": {"Different": 10.0, "Different s.e.": 0.3}, "b": {"Different": 11.1, "Different s.e.": 0.4},
            "c": {"Different": 10.5, "Different s.e.": 0.4}, "d": {"Different": 8.0, "Different s.e.": 0.1}}
    assert ordering(rows, "a", "b") == "yes"
    assert ordering(rows, "a", ["b", "c"]) == "within the noise"          # c is within 1.0 of a
    assert ordering(rows, "a", ["b", "d"]) == "no: reversed"              # d is lower beyond it
    assert ordering({"x": {"Same": 1.0}, "y": {"Same": 2.0}}, "x", "y", column="Same") == "yes"   # no s.e.: exact


def test_restore_shipped_rewrites_the_same_weights_in_the_new_store(home, monkeypatch):
    zoo.register("test/restore", {"smoke": {"n": 2048}})(
        lambda cfg, device, seed: {"state_dict": {"w": torch.randn(16, cfg["n"] // 16, generator=torch.Generator().manual_seed(seed))}})
    path = zoo.ship("test/restore", "smoke")
    before = json.loads(path.with_suffix(".json").read_text())
    fp16 = zoo.load("test/restore", "smoke")["state_dict"]["w"]
    from dataclasses import replace
    monkeypatch.setitem(zoo.RECIPES, "test/restore", replace(zoo.RECIPES["test/restore"], store="int8"))
    zoo.restore_shipped("test/restore", "smoke")
    after = json.loads(path.with_suffix(".json").read_text())
    assert after["stored"].startswith("float32 weights of >= 2 dims") and after["bytes"] < before["bytes"]
    assert after["key"] == before["key"] and after["commit"] == before["commit"] and "restored_from" in after
    for p in (home / "zoo").rglob("*.pt"):
        p.unlink()
    w = zoo.load("test/restore", "smoke")["state_dict"]["w"]                 # sha checked on load
    scale = fp16.abs().amax(1, keepdim=True) / 127
    assert ((w - fp16).abs() <= scale / 2 + 1e-6).all()                    # int8 of the float16 weights
