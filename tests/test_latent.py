"""The shared-latent generator and its Bayes ceiling (issue 23).

The Bayes rule is applied here directly to the generated features (projected on each modality's
embedding), so the closed-form ceiling is checked against the data, not against itself.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from mmcore.builtins.latent import simplex
from mmcore.builtins.synthetic import Synthetic
from mmcore.conditions import all_subsets
from mmcore.errors import DataError
from mmcore.oracle import bayes_snr, per_sample, simplex_accuracy, zero_fill_snr

REVIEWER = dict(tau=1.0, noise=0.5, nuisance=1.0, alpha=[1.0, 0.7, 1.0], gamma=[1.2, 0.6, 1.6], classes=4, dim=8)


def _digest(data: Synthetic) -> str:
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = data.split(name)
        for k in sorted(split.features):
            h.update(split.features[k].numpy().tobytes())
        for k in sorted(split.lengths):
            h.update(split.lengths[k].numpy().tobytes())
        h.update(split.target.numpy().tobytes())
        h.update(split.ids.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    "options, digest",
    [  # digests of the generator before issue 23 (main at a3de213): committed results stay reproducible
        (dict(samples=200), "d05b8c818f0a41edbcb3fe2e50a75f8b1821708bb73d0c19211e01f16958e9d3"),
        (dict(samples=120, sequence=True, max_len=6, modalities=2, classes=3, dim=5),
         "c376203ad9214722385821ed51d40b653890096824dd88ddc9e87b79be028232"),
    ],
)
def test_plain_generator_is_unchanged(options: dict, digest: str) -> None:
    assert _digest(Synthetic(**options)) == digest


def test_simplex_is_regular() -> None:
    for c in (2, 3, 5):
        v = simplex(c)
        gram = v @ v.T
        expected = torch.full((c, c), -1.0 / (c - 1), dtype=torch.float64).fill_diagonal_(1.0)
        assert torch.allclose(gram, expected, atol=1e-12)


def _bayes_accuracy(data: Synthetic, split: str, present: torch.Tensor) -> float:
    """Accuracy of the pattern's own Bayes classifier (vectors), applied to the features."""
    p, sp = data.latent, data.split(split)
    names = [s.name for s in data.modalities]
    idx = torch.nonzero(present).squeeze(1).tolist()
    coords = torch.cat([sp.features[names[m]].double() @ data.embeddings[m] for m in idx], 1)  # [N, 2K·|p|]
    k = p.k
    blocks = coords.reshape(len(sp.target), 2 * len(idx), k)
    b = torch.tensor([x for m in idx for x in (p.alpha[m], p.gamma[m])], dtype=torch.float64)
    a = torch.tensor([x for m in idx for x in (p.alpha[m], 0.0)], dtype=torch.float64)
    cov = p.tau**2 * torch.outer(a, a) + (p.nuisance**2 + p.noise**2) * torch.eye(len(b), dtype=torch.float64)
    w = torch.linalg.solve(cov, b)
    u = torch.einsum("j,njk->nk", w, blocks)
    guess = (u @ simplex(p.classes).T).argmax(1)
    return float((guess == sp.target).double().mean())


def test_ceiling_matches_monte_carlo() -> None:
    data = Synthetic(modalities=3, samples=24000, val_fraction=0.05, test_fraction=0.9, **REVIEWER)
    n = len(data.split("test").target)
    for subset in all_subsets(["a", "b", "c"]):
        present = torch.tensor(subset)
        mc = _bayes_accuracy(data, "test", present)
        exact = float(simplex_accuracy(torch.tensor([bayes_snr(data.latent, present, torch.ones(3))]), 4)[0])
        se = math.sqrt(exact * (1 - exact) / n)
        assert abs(mc - exact) < 4 * se, (subset, mc, exact, se)


def test_zero_filling_is_bayes_only_without_a_shared_latent() -> None:
    for tau, lossy in ((0.0, False), (1.0, True)):
        p = Synthetic(modalities=3, samples=40, **{**REVIEWER, "tau": tau}).latent
        for subset in all_subsets(["a", "b", "c"]):
            present = torch.tensor(subset)
            bayes, zero = simplex_accuracy(torch.tensor([bayes_snr(p, present, torch.ones(3)), zero_fill_snr(p, present)]), 4)
            if not lossy or all(subset):
                assert abs(float(bayes - zero)) < 1e-9
            elif sum(subset) == 1:  # the reviewer's setting: zero-filling loses on every single modality
                assert float(bayes - zero) > 0.005


def test_oracle_imputation_recovers_the_pattern_bayes_rule() -> None:
    """Imputing an absent modality by its conditional mean given the present ones (class-averaged
    by the posterior) and applying the complete-data rule scores like the pattern's own rule."""
    data = Synthetic(modalities=3, samples=12000, val_fraction=0.05, test_fraction=0.9, **REVIEWER)
    p, sp = data.latent, data.split("test")
    names = [s.name for s in data.modalities]
    k, mu = p.k, simplex(p.classes)
    coords = torch.stack([(sp.features[names[m]].double() @ data.embeddings[m]).reshape(-1, 2, k) for m in range(3)], 1)
    coords = coords.reshape(-1, 6, k)  # [N, 6 blocks, K]
    b = torch.tensor([x for m in range(3) for x in (p.alpha[m], p.gamma[m])], dtype=torch.float64)
    a = torch.tensor([x for m in range(3) for x in (p.alpha[m], 0.0)], dtype=torch.float64)
    cov = p.tau**2 * torch.outer(a, a) + (p.nuisance**2 + p.noise**2) * torch.eye(6, dtype=torch.float64)
    w_full = torch.linalg.solve(cov, b)
    obs, hid = torch.tensor([0, 1]), torch.tensor([2, 3, 4, 5])  # only the first modality present
    w_obs = torch.linalg.solve(cov[obs][:, obs], b[obs])
    u_obs = torch.einsum("j,njk->nk", w_obs, coords[:, obs])
    post = torch.softmax(u_obs @ mu.T - 0.5 * float(w_obs @ b[obs]) * (mu * mu).sum(1), dim=1)  # [N, C]
    reg = cov[hid][:, obs] @ torch.linalg.inv(cov[obs][:, obs])  # [4, 2]
    mean_y = torch.einsum("j,ck->cjk", b, mu)  # [C, 6, K]
    resid = coords[:, obs].unsqueeze(1) - mean_y[:, obs].unsqueeze(0)  # [N, C, 2, K]
    cond = mean_y[:, hid].unsqueeze(0) + torch.einsum("hj,ncjk->nchk", reg, resid)
    filled = coords.clone()
    filled[:, hid] = torch.einsum("nc,nchk->nhk", post, cond)
    imputed = (torch.einsum("j,njk->nk", w_full, filled) @ mu.T).argmax(1)
    zeroed = coords.clone()
    zeroed[:, hid] = 0
    zero = (torch.einsum("j,njk->nk", w_full, zeroed) @ mu.T).argmax(1)
    own = (u_obs @ mu.T).argmax(1)
    acc = {n: float((g == sp.target).double().mean()) for n, g in (("imputed", imputed), ("zero", zero), ("own", own))}
    assert abs(acc["imputed"] - acc["own"]) < 0.005, acc
    assert float((imputed == own).double().mean()) > 0.97, acc


def test_sequence_ceiling_rises_with_frames_and_oracle_shape() -> None:
    data = Synthetic(modalities=2, samples=200, sequence=True, max_len=8, dim=6, classes=3, tau=0.5,
                     nuisance=0.3, noise=2.0)
    sp = data.split("test")
    full = torch.ones(len(sp.target), 2, dtype=torch.bool)
    one = full.clone()
    one[:, 1] = False
    table = data.oracle(sp, {"full": full, "m0": one})
    assert set(table) == {"full", "m0"} and set(table["full"]) == {"accuracy"}
    assert 1 / 3 < table["m0"]["accuracy"] < table["full"]["accuracy"] < 1
    few = per_sample(data.latent, full, torch.ones(len(sp.target), 2, dtype=torch.int64))
    many = per_sample(data.latent, full, torch.full((len(sp.target), 2), 8, dtype=torch.int64))
    assert bool((many > few).all())


def test_regression_bayes_mse_matches_the_posterior_mean() -> None:
    data = Synthetic(modalities=2, samples=20000, dim=4, classes=3, tau=1.0, nuisance=0.5, noise=0.5,
                     task="regression", val_fraction=0.05, test_fraction=0.9)
    sp = data.split("test")
    full = torch.ones(len(sp.target), 2, dtype=torch.bool)
    ceiling = data.oracle(sp, {"full": full})["full"]["mse"]
    # the Bayes estimate is linear in the features here: least squares on the test split reaches it
    x = torch.cat([sp.features["m0"], sp.features["m1"], torch.ones(len(sp.target), 1)], 1).double()
    beta = torch.linalg.lstsq(x, sp.target.double().unsqueeze(1)).solution
    mse = float(((x @ beta).squeeze(1) - sp.target.double()).pow(2).mean())
    assert ceiling <= mse + 0.01 and mse < ceiling * 1.05, (ceiling, mse)


@pytest.mark.parametrize(
    "options, fragment",
    [
        (dict(tau=-1.0), "tau"),
        (dict(tau=1.0, alpha=[1.0, 1.0]), "'alpha' needs one value per modality"),
        (dict(alpha=[1.0, 1.0, 1.0]), "set 'tau'"),
        (dict(tau=1.0, signal=[1.0, 1.0, 1.0]), "'signal' belongs to the plain generator"),
        (dict(tau=1.0, dim=4, classes=4), "2*(classes-1)=6"),
    ],
)
def test_bad_latent_options_are_one_line_errors(options: dict, fragment: str) -> None:
    with pytest.raises(DataError) as err:
        Synthetic(samples=60, **options)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("dataset.tau=-1", "dataset.tau: expected float >= 0.0"),
        ("dataset.alpha=[1, 1]", "'alpha' needs one value per modality (3 values), got 2"),
        ("~dataset.tau", "set 'tau' (0 or more)"),
        ("missing.train.mechanism=mar;missing.train.depends_on=x", "depends_on names unknown modality 'x'"),
        ("+missing.frames.rate=0.3", "no modality of this dataset is a sequence"),
        ("missing.train.mechanism=mnar;missing.train.rates={a: 0.7, v: 0.7, l: 0.7}", "infeasible with min_present=1"),
    ],
)
def test_the_issues_bad_inputs_fail_validation_in_one_line(override: str, fragment: str) -> None:
    """Issue 23's bad inputs on the vector preset: `mmcore validate` exits 2 with one line naming
    the file and key, before any data is drawn (the latent options through ``describe``)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from mmcore.cli import app

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "latent_vector.yaml"
    result = CliRunner().invoke(app, ["validate", str(recipe), *override.split(";")])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert result.output.count("\n") == 1 and "latent_vector.yaml" in result.output


def test_eval_json_carries_the_oracle(tmp_path) -> None:
    """A run on the latent generator writes the closed-form ceiling beside the model's numbers;
    the plain one a Monte Carlo ceiling with its standard error."""
    from mmcore.oracle import read_oracle
    from mmcore.testing import short_run, tiny_recipe

    latent = {"type": "mmcore.synthetic", "modalities": 3, "classes": 3, "samples": 60, "dim": 4, "tau": 1.0}
    result = short_run(tiny_recipe(tmp_path / "a", "train.epochs=1", dataset=latent))
    entry = read_oracle(result.run_dir)
    assert entry is not None and set(entry["results"]) == {"val", "test"}
    test = entry["results"]["test"]
    assert "average" in test and all(1 / 3 < row["accuracy"] <= 1 for row in test.values())
    plain = short_run(tiny_recipe(tmp_path / "b", "train.epochs=1", dataset={**latent, "tau": None}))
    mc = read_oracle(plain.run_dir)
    assert mc is not None and mc["method"].startswith("Monte Carlo")
    assert all(0 < row["accuracy_se"] < 0.1 for row in mc["results"]["test"].values() if "accuracy_se" in row)


def test_monte_carlo_ceiling_of_the_plain_generator_matches_the_bayes_rule_on_data() -> None:
    """The plain generator's ceiling (no closed form) agrees with its Bayes rule scored on real draws."""
    import math

    from mmcore.montecarlo import mc_bayes_accuracy
    from mmcore.oracle import frame_counts

    data = Synthetic(modalities=2, classes=4, samples=20000, dim=3, sequence=True, max_len=5, test_fraction=0.5)
    test = data.split("test")
    names = [s.name for s in data.modalities]
    frames = frame_counts(test, names)
    for mask in (torch.tensor([True, False]), torch.tensor([True, True])):
        masks = mask.expand(len(test), -1)
        p, se = mc_bayes_accuracy(data.centres, data.noise, test.target, masks, frames, draws=16)
        score = torch.zeros(len(test), 4, dtype=torch.float64)
        for m, name in enumerate(names):
            if mask[m]:
                xbar = test.features[name].double().sum(1) / frames[:, m:m + 1]
                score -= frames[:, m:m + 1] * ((xbar[:, None] - data.centres[m].double()[None]) ** 2).sum(-1)
        empirical = float((score.argmax(1) == test.target).double().mean())
        assert abs(p - empirical) < 4 * math.sqrt(se**2 + empirical * (1 - empirical) / len(test))


def test_room_preset_leaves_zero_filling_well_below_the_ceiling() -> None:
    """recipes/latent_room.yaml's closed form: zero-filling loses >= 0.04 per single modality at tau 1, nothing at tau 0."""
    from mmcore.oracle import bayes_snr, simplex_accuracy, zero_fill_snr

    for tau, least in ((1.0, 0.04), (0.0, 0.0)):
        p = Synthetic(modalities=3, samples=40, dim=8, classes=4, tau=tau, alpha=[2.0] * 3, gamma=[0.5] * 3,
                      nuisance=0.5, noise=0.5).latent
        for m in range(3):
            present = torch.arange(3) == m
            bayes = float(simplex_accuracy(torch.tensor([bayes_snr(p, present, torch.ones(3))]), 4))
            zero = float(simplex_accuracy(torch.tensor([zero_fill_snr(p, present)]), 4))
            assert bayes - zero >= least - 1e-9 and (tau > 0 or abs(bayes - zero) < 1e-9)
