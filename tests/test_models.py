"""Model registry, search spaces, input representations, checkpoints."""

from __future__ import annotations

import optuna
import pytest
import torch

from ecg_sweep.config import TRAIN_FIELDS, split_params
from ecg_sweep.errors import ConfigError
from ecg_sweep.models import (
    ModelInfo,
    ModelSpec,
    SpaceContext,
    build_model,
    get_model_spec,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from ecg_sweep.models._registry import register_model
from ecg_sweep.models.space import Categorical, Fixed, Float, Int, apply_overrides, load_space_file

FAMILIES = ["vit", "deit", "efficientnetv2", "convnext", "resnet1d"]
IMAGE_FAMILIES = ["vit", "deit", "efficientnetv2", "convnext"]  # resnet1d is 1-D only
STD = {"mode": "global", "mean": [0.0], "std": [1.0]}


def info_for(name, n_samples=1000, **params):
    spec = get_model_spec(name)
    return ModelInfo(
        name,
        spec.params("tiny", **params),
        ("NORM", "MI", "STTC", "CD", "HYP"),
        100,
        12,
        n_samples,
        STD,
    )


def test_registry_lists_every_family():
    assert list_models() == sorted(FAMILIES)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(
        ConfigError,
        match="unknown model 'resnet'; valid: convnext, deit, efficientnetv2, resnet1d, vit",
    ):
        get_model_spec("resnet")


def test_duplicate_registration_fails():
    spec = get_model_spec("vit")
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec(**{**spec.__dict__}))


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
@pytest.mark.parametrize("repr_", ["signal", "image"])
def test_every_family_builds_in_both_representations(name, repr_):
    extra = {"image_height": 96, "image_width": 128} if repr_ == "image" else {}
    model = build_model(info_for(name, input_repr=repr_, **extra)).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 12, 1000))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


def test_input_geometries():
    vit = build_model(info_for("vit", input_repr="image", patch_size=8))
    assert vit.adapter.spec.shape == (3, 184, 256)  # 182 rounded to the nearest multiple of 8
    deit = build_model(info_for("deit", input_repr="image", patch_size=16))
    assert deit.adapter.spec.shape == (3, 176, 256)
    sig = build_model(info_for("vit", input_repr="signal", patch_time=20))
    assert sig.adapter.spec.shape == (1, 12, 1000)
    assert sig.adapter(torch.randn(2, 12, 1000)).shape == (2, 1, 12, 1000)
    cnn = build_model(info_for("convnext", input_repr="signal", signal_layout="fold"))
    assert cnn.adapter(torch.randn(2, 12, 1000)).shape == (2, 12, 32, 32)
    cnn = build_model(info_for("convnext", input_repr="signal"))  # default: leads as channels
    assert cnn.adapter(torch.randn(2, 12, 1000)).shape == (2, 12, 1, 1000)


@pytest.mark.parametrize("name", ["convnext", "efficientnetv2"])
def test_cnn_1d_layout_convolves_time_only(name):
    m = build_model(info_for(name, input_repr="signal", signal_layout="1d")).eval()
    convs = [c for c in m.backbone.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs and all(c.kernel_size[0] == 1 and c.stride[0] == 1 for c in convs)
    with torch.no_grad():
        feats = m.backbone.forward_features(m.adapter(torch.randn(2, 12, 1000)))
    assert feats.shape[2] == 1 and 25 <= feats.shape[3] <= 40  # time downsampled ~32x
    # fold layout keeps the family's 2-D convolutions
    fold = build_model(info_for(name, input_repr="signal", signal_layout="fold"))
    assert any(
        c.kernel_size[0] > 1 for c in fold.backbone.modules() if isinstance(c, torch.nn.Conv2d)
    )


@pytest.mark.parametrize("preset", ["tiny", "wang", "xresnet1d18", "xresnet1d50", "xresnet1d101"])
def test_resnet1d_presets_build_and_run(preset):
    spec = get_model_spec("resnet1d")
    info = ModelInfo("resnet1d", spec.params(preset), ("A", "B", "C"), 100, 12, 1000, STD)
    m = build_model(info).eval()
    assert m.adapter.spec.layout == "leads_channels"
    with torch.no_grad():
        out = m(torch.randn(2, 12, 1000))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    convs = [c for c in m.backbone.modules() if isinstance(c, torch.nn.Conv2d)]
    assert all(c.kernel_size[0] == 1 and c.stride[0] == 1 for c in convs)  # time-only


def test_resnet1d_wang_has_the_benchmark_layout():
    """resnet1d_wang as in ecg_ptbxl_benchmarking: stem kernel 7 stride 1 without pooling,
    128 channels, three basic blocks of kernels 5 then 3 (strides 1, 2, 2), concat-pooling head
    (max and average features, 128 hidden units)."""
    m = build_model(info_for("resnet1d", width=128, head_hidden=128)).backbone
    stem = m.stem[0][0]
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((1, 7), (1, 1), 128)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.stem.modules())
    assert [(b.conv1.kernel_size[1], b.conv2.kernel_size[1]) for b in m.stages] == [(5, 3)] * 3
    assert [b.conv1.stride[1] for b in m.stages] == [1, 2, 2]
    assert (m.head.fc_max.in_features, m.head.fc_avg.in_features, m.head.fc.in_features) == (
        128,
        128,
        128,
    )
    x = torch.randn(2, 12, 1000)
    feats = m.stages(m.stem(x.unsqueeze(2)))
    assert feats.shape == (2, 128, 1, 250)  # 1000 samples / 4


def test_resnet1d_rejects_what_it_cannot_build():
    with pytest.raises(ConfigError, match="signal input only"):
        build_model(info_for("resnet1d", input_repr="image"))
    with pytest.raises(ConfigError, match="too short"):
        build_model(info_for("resnet1d", n_samples=16, arch="xresnet", depths="2-2-2-2"))
    with pytest.raises(ConfigError, match="kernel_size must be a positive odd"):
        build_model(info_for("resnet1d", kernel_size=4))


@pytest.mark.parametrize("name", ["vit", "deit"])
def test_conv_patch_embed_is_a_stem_before_the_same_tokens(name):
    lin = build_model(info_for(name, patch_embed="linear")).eval()
    conv = build_model(info_for(name, patch_embed="conv")).eval()
    assert isinstance(lin.backbone.patch_embed.proj, torch.nn.Conv2d)
    stem = conv.backbone.patch_embed.proj
    assert isinstance(stem, torch.nn.Sequential)
    assert stem[0].kernel_size == (1, 7)  # time-only on the signal input
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in stem)
    assert stem[-1].kernel_size == stem[-1].stride == (12, 20)  # the same patches
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        t_lin = lin.backbone.patch_embed(lin.adapter(x))
        t_conv = conv.backbone.patch_embed(conv.adapter(x))
        assert conv(x).shape == (2, 5)
    assert t_lin.shape == t_conv.shape == (2, 50, 64)
    with pytest.raises(ConfigError, match="patch_embed must be one of linear, conv"):
        build_model(info_for(name, patch_embed="hybrid"))


def test_adapter_standardizes_with_train_statistics():
    info = ModelInfo("vit", get_model_spec("vit").params("tiny"), ("A", "B"), 100, 12, 1000,
                     {"mode": "global", "mean": [2.0], "std": [4.0]})  # fmt: skip
    m = build_model(info)
    x = torch.full((1, 12, 1000), 6.0)
    assert torch.allclose(m.adapter(x), torch.ones(1, 1, 12, 1000))


def test_deit_has_two_heads_and_mean_in_eval():
    m = build_model(info_for("deit"))
    m.train()
    m.set_distilled_training(True)
    out = m(torch.randn(2, 12, 1000))
    assert isinstance(out, tuple) and len(out) == 2
    m.eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        tokens = m.backbone.forward_features(m.adapter(x))
        cls, dist = m.backbone.head(tokens[:, 0]), m.backbone.head_dist(tokens[:, 1])
        out = m(x)
    assert out.shape == (2, 5) and not torch.allclose(cls, dist, atol=1e-3)
    # in eval the prediction is the mean of the class head and the distillation head
    torch.testing.assert_close(out, (cls + dist) / 2)


def test_reference_configuration_defaults():
    vit = get_model_spec("vit").defaults
    assert (
        vit["patch_size"],
        vit["embed_dim"],
        vit["depth"],
        vit["num_heads"],
        vit["mlp_ratio"],
        vit["dropout"],
    ) == (8, 256, 6, 4, 4.0, 0.1)
    deit = get_model_spec("deit").defaults
    assert (
        deit["patch_size"],
        deit["embed_dim"],
        deit["depth"],
        deit["num_heads"],
        deit["dropout"],
    ) == (16, 192, 12, 3, 0.2)
    cn = get_model_spec("convnext")
    assert (cn.defaults["depths"], cn.defaults["width"], cn.defaults["kernel_size"]) == (
        "3-3-9-3",
        96,
        7,
    )
    assert cn.train_defaults == {"optimizer": "adamw", "lr": 4e-3, "weight_decay": 0.05}
    ef = get_model_spec("efficientnetv2")
    assert ef.defaults["drop_path"] == 0.2 and ef.train_defaults["optimizer"] == "adam"


@pytest.mark.parametrize("name", FAMILIES)
def test_one_name_end_to_end_and_fixed_trial_rebuilds(name):
    spec = get_model_spec(name)
    ctx = SpaceContext(n_samples=1000, has_teacher=(name == "deit"))
    space = spec.search_space(ctx)
    # every search-space name is a factory kwarg (a model default) or a TrainConfig field
    assert set(space) <= set(spec.defaults) | TRAIN_FIELDS
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    sampled = spec.suggest(trial, space, ctx)
    assert sampled == trial.params
    again = spec.suggest(optuna.trial.FixedTrial(trial.params), space, ctx)
    assert again == sampled
    # the sampled architecture (a fixed trial gives the same params) builds and runs
    model_params, _ = split_params(again)
    info = ModelInfo(name, spec.active_params(spec.params(**model_params)),
                     ("NORM", "MI", "STTC", "CD", "HYP"), 100, 12, 1000, STD)  # fmt: skip
    with torch.no_grad():
        assert build_model(info).eval()(torch.randn(1, 12, 1000)).shape == (1, 5)


def test_transformer_space_only_valid_combinations():
    spec = get_model_spec("vit")
    space = spec.search_space(SpaceContext(n_samples=1000))
    for e in space["embed_dim"].values():
        for h in space["num_heads"].values():
            assert e % h == 0
    assert all(1000 % p == 0 for p in space["patch_time"].values())
    assert space["patch_time"].values() == (10, 20, 25, 40, 50)
    assert get_model_spec("vit").search_space(SpaceContext(n_samples=5000))[
        "patch_time"
    ].values() == (50, 100, 125, 200, 250)


def test_conditional_params_are_not_logged():
    spec = get_model_spec("vit")
    active = spec.active_params(spec.params(input_repr="signal"))
    assert "patch_time" in active and "patch_size" not in active and "image_height" not in active
    active = spec.active_params(spec.params(input_repr="image"))
    assert "patch_size" in active and "patch_time" not in active


def test_deit_distillation_params_only_with_teacher():
    spec = get_model_spec("deit")
    assert "distill_alpha" not in spec.search_space(SpaceContext())
    assert {"distill_alpha", "distill_temperature"} <= set(
        spec.search_space(SpaceContext(has_teacher=True))
    )


# --- search-space files --------------------------------------------------------------------------


def test_overrides_narrow_and_fix():
    spec = get_model_spec("vit")
    space = spec.search_space(SpaceContext())
    out = apply_overrides(
        space,
        {
            "lr": {"low": 1e-4, "high": 2e-4},
            "depth": 3,
            "embed_dim": {"choices": [96, 192]},
            "input_repr": "signal",
        },
        "vit",
    )
    assert out["lr"] == Float(1e-4, 2e-4, log=True)
    assert out["depth"] == Fixed(3)
    assert out["embed_dim"] == Categorical((96, 192))
    assert out["input_repr"] == Fixed("signal")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"depthh": 3}, "'depthh' is not a parameter of model 'vit'"),
        ({"depth": {"low": 5, "high": 2}}, "'depth': low 5 > high 2"),
        ({"depth": "deep"}, "'depth': value must be a number"),
        ({"input_repr": "spectrogram"}, "'input_repr': 'spectrogram' is not one of"),
        ({"lr": {"low": 0, "high": 1e-3}}, "'lr': log scale needs low > 0"),
        (
            {"embed_dim": {"low": 1, "high": 2}},
            "'embed_dim': a categorical parameter takes 'choices'",
        ),
        ({"depth": {"lo": 1}}, "'depth': unknown field"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    spec = get_model_spec("vit")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(spec.search_space(SpaceContext()), override, "vit")


def test_invalid_combination_in_space_is_rejected():
    spec = get_model_spec("vit")
    ctx = SpaceContext()
    space = apply_overrides(
        spec.search_space(ctx), {"embed_dim": 100, "num_heads": {"choices": [3, 4]}}, "vit"
    )
    with pytest.raises(ConfigError, match="'embed_dim' and 'num_heads'"):
        spec.validate_space(space, ctx)
    space = apply_overrides(spec.search_space(ctx), {"patch_time": {"choices": [20, 30]}}, "vit")
    with pytest.raises(ConfigError, match="'patch_time': 30"):
        spec.validate_space(space, ctx)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_space_files(tmp_path, suffix):
    p = tmp_path / f"space{suffix}"
    if suffix == ".yaml":
        p.write_text("vit:\n  depth: {low: 2, high: 4}\n  lr: 0.001\n")
    else:
        p.write_text("[vit]\ndepth = {low = 2, high = 4}\nlr = 0.001\n")
    data = load_space_file(p)
    assert data["vit"]["depth"] == {"low": 2, "high": 4}
    out = apply_overrides(get_model_spec("vit").search_space(SpaceContext()), data["vit"], "vit")
    assert out["depth"] == Int(2, 4) and out["lr"] == Fixed(0.001)


def test_unparseable_space_file(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("depth: [1, 2\n")
    with pytest.raises(ConfigError, match="space.yaml: cannot parse"):
        load_space_file(p)
    with pytest.raises(ConfigError, match="must end in"):
        (tmp_path / "space.json").write_text("{}")
        load_space_file(tmp_path / "space.json")


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_roundtrip_weights_only(tmp_path):
    m = build_model(info_for("convnext")).eval()
    path = save_checkpoint(m, tmp_path / "best.pt")
    # loadable with weights_only=True (no pickled code)
    torch.load(path, weights_only=True)
    m2 = load_checkpoint(path).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert m2.info == m.info


def test_pretrained_weights_from_local_file(tmp_path):
    src = build_model(info_for("vit"))
    torch.save(src.backbone.state_dict(), tmp_path / "w.pt")
    dst = build_model(info_for("vit"), pretrained_weights=tmp_path / "w.pt")
    for (k, a), b in zip(
        src.backbone.state_dict().items(), dst.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="pretrained weights file not found"):
        build_model(info_for("vit"), pretrained_weights=tmp_path / "nope.pt")
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="no tensor matches"):
        build_model(info_for("vit"), pretrained_weights=tmp_path / "bad.pt")
