"""The latent presets' ceiling tables and plug-in LDA sizing check (docs/datasets.md, issue 23).

Not a speed benchmark: it regenerates the numbers docs/datasets.md quotes for
recipes/latent_{vector,room,sequence}.yaml -- per condition the closed-form Bayes ceiling on the
test split, and a plug-in linear discriminant (class means and pooled covariance from the
complete training data, on frame means for sequences) scored on the same split, so a preset's
size can be judged: the LDA should come within about 0.02 of the ceiling.

    python benchmarks/latent_ceiling.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from mmcore.oracle import frame_counts, per_sample
from mmcore.plugins import get_registry
from mmcore.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _features(split, names: list[str], subset: tuple[int, ...]) -> torch.Tensor:
    cols = []
    for m in subset:
        x = split.features[names[m]].double()
        cols.append(x.sum(1) / split.lengths[names[m]].double()[:, None] if x.dim() == 3 else x)
    return torch.cat(cols, 1)


def lda_accuracy(train, test, names: list[str], subset: tuple[int, ...], classes: int) -> float:
    """Plug-in LDA: equal priors, pooled covariance (a small ridge keeps it invertible)."""
    x, y = _features(train, names, subset), train.target
    mu = torch.stack([x[y == c].mean(0) for c in range(classes)])
    r = x - mu[y]
    cov = r.T @ r / len(x) + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(cov, mu.T)
    scores = _features(test, names, subset) @ w - 0.5 * (mu * w.T).sum(1)
    return float((scores.argmax(1) == test.target).double().mean())


def table(recipe_file: str) -> None:
    recipe = load_recipe(RECIPES / recipe_file)
    node = {k: v for k, v in recipe["dataset"].items() if k != "type"}
    data = get_registry().get("dataset", recipe["dataset"]["type"]).factory(**node)
    names = [s.name for s in data.modalities]
    train, test = data.split("train"), data.split("test")
    frames = frame_counts(test, names)
    m = len(names)
    print(f"{recipe_file}: condition, Bayes ceiling, plug-in LDA")
    ceilings, ldas = [], []
    for subset in (s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)):
        mask = torch.zeros(len(test), m, dtype=torch.bool)
        mask[:, list(subset)] = True
        ceilings.append(float(per_sample(data.latent, mask, frames).mean()))
        ldas.append(lda_accuracy(train, test, names, subset, data.task.num_classes))
        print(f"  {'+'.join(names[i] for i in subset):8s} {ceilings[-1]:.4f} {ldas[-1]:.4f}")
    print(f"  average  {sum(ceilings) / len(ceilings):.4f} {sum(ldas) / len(ldas):.4f}")


if __name__ == "__main__":
    for name in ("latent_vector.yaml", "latent_room.yaml", "latent_sequence.yaml"):
        table(name)
