"""missing.frames: frames dropped in segments inside present sequence modalities."""

from __future__ import annotations

import pytest
import torch

from mmcore.errors import MMCoreError, RecipeError
from mmcore.frames import FrameSpec, drop_frames, keep_frames
from mmcore.types import ModalitySpec, SplitData

SPECS = [ModalitySpec("a", 2, sequence=True, max_len=40), ModalitySpec("b", 3)]
IDS = torch.arange(500, 2500)


def make_split(n: int = 200, seed: int = 0) -> SplitData:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 41, (n,), generator=g)
    x = torch.randn(n, 40, 2, generator=g) * (torch.arange(40)[None, :, None] < lengths[:, None, None])
    return SplitData({"a": x, "b": torch.randn(n, 3, generator=g)}, {"a": lengths}, torch.zeros(n, dtype=torch.long), torch.arange(n))


def test_every_frame_is_dropped_at_the_rate_in_contiguous_segments() -> None:
    keep = keep_frames(0.3, 5, IDS, 40, seed=0, stream=1)
    assert float((~keep).double().mean()) == pytest.approx(0.3, abs=0.02)
    assert float((~keep[:, 17]).double().mean()) == pytest.approx(0.3, abs=0.05)  # each position alike
    for row in keep.tolist():  # interior runs of dropped frames are whole segments
        runs, start = [], None
        for t, kept in enumerate(row + [True]):
            if not kept and start is None:
                start = t
            if kept and start is not None:
                runs.append((start, t))
                start = None
        assert all((stop - begin) % 5 == 0 for begin, stop in runs if begin > 0 and stop < 40)


def test_frame_drops_are_seeded_and_follow_sample_ids() -> None:
    keep = keep_frames(0.4, 3, IDS, 20, seed=1, stream=7)
    assert torch.equal(keep, keep_frames(0.4, 3, IDS, 20, seed=1, stream=7))
    assert not torch.equal(keep, keep_frames(0.4, 3, IDS, 20, seed=2, stream=7))
    order = torch.randperm(len(IDS), generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep_frames(0.4, 3, IDS[order], 20, seed=1, stream=7), keep[order])


def test_dropped_frames_leak_nothing_and_fully_dropped_rows_are_absent() -> None:
    split = make_split()
    spec = FrameSpec(rate=0.5, segment=4)
    out = drop_frames(split, SPECS, spec, seed=3, training=True)
    dropped = (out.features["a"] == 0).all(-1) & (split.features["a"] != 0).any(-1)
    assert dropped.any()
    changed = SplitData({**split.features, "a": torch.where(dropped[..., None], 99.0, split.features["a"])},
                        split.lengths, split.target, split.ids)
    assert torch.equal(drop_frames(changed, SPECS, spec, seed=3, training=True).features["a"], out.features["a"])
    assert torch.equal(out.features["b"], split.features["b"])  # vectors untouched
    valid = torch.arange(40)[None, :] < split.lengths["a"][:, None]
    none_left = ~((out.features["a"] != 0).any(-1) & valid).any(1)
    assert torch.equal(out.unusable[:, 0], none_left) and not out.unusable[:, 1].any()
    assert drop_frames(split, SPECS, FrameSpec(rate=1.0), 0, True).unusable[:, 0].all()


def test_evaluation_frames_have_their_own_rate_and_seed() -> None:
    split = make_split()
    spec = FrameSpec(rate=0.0, eval_rate=0.5, seed=4)
    assert drop_frames(split, SPECS, spec, seed=0, training=True) is split
    a = drop_frames(split, SPECS, spec, seed=0, training=False).features["a"]
    assert torch.equal(a, drop_frames(split, SPECS, spec, seed=99, training=False).features["a"])  # not the run's seed
    assert not torch.equal(a, split.features["a"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (FrameSpec(rate=0.2), "no modality of this dataset is a sequence"),
        (FrameSpec(rate=0.2, modalities=("b",)), "'b' is a vector modality"),
        (FrameSpec(rate=0.2, modalities=("aa",)), "unknown modality 'aa'"),
    ],
)
def test_frame_specs_that_cannot_apply_are_one_line_errors(spec: FrameSpec, message: str) -> None:
    specs = [SPECS[1]] if "sequence" in message else SPECS
    with pytest.raises(MMCoreError, match=message):
        drop_frames(make_split(), specs, spec, 0, True)


def test_recipe_validation_rejects_a_frame_rate_on_vector_data(make_recipe) -> None:
    with pytest.raises(RecipeError, match="missing.frames: rate 0.2 .* no modality of this dataset is a sequence"):
        make_recipe("missing.frames.rate=0.2")


def test_a_run_with_dropped_frames_trains_evaluates_and_resumes(make_recipe) -> None:
    from mmcore.engine.trainer import run

    seq = ["dataset.sequence=true", "dataset.max_len=8", "missing.frames.rate=0.3", "missing.frames.segment=2",
           "missing.frames.eval_rate=0.5", "train.epochs=2"]
    straight = run(make_recipe(*seq), show_progress=False)
    stopped = run(make_recipe(*seq, "train.max_steps=5"), show_progress=False)
    resumed = run(make_recipe(*seq), run_dir=stopped.run_dir, resume=True, show_progress=False)
    assert resumed.results["test"] == straight.results["test"]


def test_eval_curve_over_frame_rates(make_recipe) -> None:
    import json

    from mmcore.after.evaluation import evaluate_run
    from mmcore.engine.trainer import run

    done = run(make_recipe("dataset.sequence=true", "dataset.max_len=8", "train.epochs=1"), show_progress=False)
    result = evaluate_run(done.run_dir, curve=True, over="frames", rates=[0.0, 0.5, 1.0], draws=2)
    assert result.out_dir.name == "curve-frames"
    curve = json.loads((result.out_dir / "curve.json").read_text())["curves"]["frames"]
    assert curve["rates"] == [0.0, 0.5, 1.0]
    full = json.loads((result.out_dir / "curve.json").read_text())["full"]["accuracy"]
    assert curve["mean"]["accuracy"][0] == pytest.approx(full) and curve["std"]["accuracy"][0] == 0.0
    assert curve["std"]["macro_f1"][1] > 0.0  # two seeds drop different frames
    assert curve["mean"]["accuracy"][2] < full  # every frame gone: every modality absent
    vectors = run(make_recipe("train.epochs=1", "train.max_steps=1"), show_progress=False)
    with pytest.raises(MMCoreError, match="no modality of this dataset is a sequence"):
        evaluate_run(vectors.run_dir, curve=True, over="frames", rates=[0.0, 0.5], checkpoint="last")


def test_the_ceiling_is_given_the_kept_frames() -> None:
    """With frames dropped at evaluation the latent oracle counts only the kept frames: a lower ceiling."""
    from mmcore.builtins.synthetic import Synthetic
    from mmcore.frames import kept_lengths

    data = Synthetic(modalities=2, samples=300, sequence=True, max_len=10, dim=6, classes=3, tau=1.0)
    test, specs = data.split("test"), list(data.modalities)
    full = {"all": torch.ones(len(test), 2, dtype=torch.bool)}
    kept = kept_lengths(test, specs, FrameSpec(eval_rate=0.6, segment=2), 0, False)
    assert bool((kept.lengths["m0"] <= test.lengths["m0"]).all()) and bool((kept.lengths["m0"] < test.lengths["m0"]).any())
    assert data.oracle(kept, full)["all"]["accuracy"] < data.oracle(test, full)["all"]["accuracy"]
