"""The zoo recipes are well-formed at every scale (training itself runs in the chapters)."""
import pytest

from ssl_lab import zoo
from ssl_lab.ssl.byol import DEFAULTS

RECIPES = ("lead/stage1-byol", "lead/stage1-moco", "lead/supervised")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_configs_exist_at_every_scale(name):
    for scale in ("smoke", "small", "full"):
        cfg = zoo.config(name, scale)
        assert cfg["scale"] == scale
        if "stage1" in name:                     # everything else goes to train_ssl
            assert set(cfg) - {"scale", "n", "render"} <= set(DEFAULTS)


def test_full_scale_follows_the_thesis():
    cfg = zoo.config("lead/stage1-byol", "full")
    assert cfg["backbone"] == "resnet50" and cfg["batch_size"] == 256 and cfg["lr"] == 0.03
    assert cfg["size"] == 96 and cfg["optimizer"] == "sgd"
    # 200 epochs of the 162,770 CelebA training images at batch 256
    assert abs(cfg["steps"] - 200 * 162_770 / 256) / cfg["steps"] < 0.01


def test_full_scale_needs_a_data_root(monkeypatch):
    from ssl_lab.recipes import pretraining_images
    monkeypatch.delenv("SSL_LAB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="--data-root"):
        pretraining_images("full", None, None)
