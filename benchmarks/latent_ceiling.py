"""The latent presets' ceiling tables and plug-in LDA sizing check (docs/datasets.md, issue 23).

Not a speed benchmark: it regenerates the numbers docs/datasets.md quotes for
recipes/latent_{vector,room,sequence}.yaml -- per condition the closed-form Bayes ceiling on the
test split, and a plug-in linear discriminant (class means and pooled covariance from the
complete training data, on frame means for sequences) scored on the same split, so a preset's
size can be judged: the LDA should come within about 0.02 of the ceiling. For vector presets
also the Bayes rule itself (the generator's true parameters) scored on the split's samples, and
the complete-data rule applied to zero-filled inputs: the ceiling is an expectation, and a
1200-sample test split sits about 0.01 from it, so a trained model on the same split is judged
best against these realised columns (studies/latent_methods*.yaml run on this fixed split).

    python benchmarks/latent_ceiling.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from mmcore.builtins.latent import simplex
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


def rule_accuracy(data, split, subset: tuple[int, ...], zero_fill: bool = False) -> float:
    """The Bayes rule with the generator's true parameters, scored on ``split`` (vectors only):
    the pattern's own rule, or (``zero_fill``) the complete-data rule with absent blocks zeroed."""
    p, names, m = data.latent, [s.name for s in data.modalities], len(data.modalities)
    used = tuple(range(m)) if zero_fill else subset
    b = torch.tensor([x for i in used for x in (p.alpha[i], p.gamma[i])], dtype=torch.float64)
    a = torch.tensor([x for i in used for x in (p.alpha[i], 0.0)], dtype=torch.float64)
    cov = p.tau**2 * torch.outer(a, a) + (p.nuisance**2 + p.noise**2) * torch.eye(len(b), dtype=torch.float64)
    w = torch.linalg.solve(cov, b)
    blocks = [(split.features[names[i]].double() @ data.embeddings[i]).reshape(-1, 2, p.k) * (i in subset) for i in used]
    u = torch.einsum("j,njk->nk", w, torch.cat(blocks, 1))
    return float(((u @ simplex(p.classes).T).argmax(1) == split.target).double().mean())


def table(recipe_file: str) -> None:
    recipe = load_recipe(RECIPES / recipe_file)
    node = {k: v for k, v in recipe["dataset"].items() if k != "type"}
    data = get_registry().get("dataset", recipe["dataset"]["type"]).factory(**node)
    names = [s.name for s in data.modalities]
    train, test = data.split("train"), data.split("test")
    frames = frame_counts(test, names)
    m = len(names)
    vectors = not any(s.sequence for s in data.modalities)
    extra = ", Bayes rule on the split, zero-filled complete-data rule on the split" if vectors else ""
    print(f"{recipe_file}: condition, Bayes ceiling, plug-in LDA{extra}")
    rows = []
    for subset in (s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)):
        mask = torch.zeros(len(test), m, dtype=torch.bool)
        mask[:, list(subset)] = True
        row = [float(per_sample(data.latent, mask, frames).mean()), lda_accuracy(train, test, names, subset, data.task.num_classes)]
        if vectors:
            row += [rule_accuracy(data, test, subset), rule_accuracy(data, test, subset, zero_fill=True)]
        rows.append(row)
        print(f"  {'+'.join(names[i] for i in subset):8s} " + " ".join(f"{v:.4f}" for v in row))
    print("  average  " + " ".join(f"{sum(col) / len(col):.4f}" for col in zip(*rows)))


if __name__ == "__main__":
    for name in ("latent_vector.yaml", "latent_room.yaml", "latent_sequence.yaml"):
        table(name)
