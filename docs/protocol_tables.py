"""Tables and interaction tests of docs/protocol.sh's sweeps, as markdown for docs/results.md.

    python docs/protocol_tables.py runs/protocol imbalanced balanced

Per preset: test macro-F1 (mean ± std over seeds) averaged over the 7 conditions, over the
single-modality conditions (a, v, l) and per condition; paired comparisons of RedCore (VIB +
relative advantage) against each other method on the 7-condition average (paired t-test and
Wilcoxon signed-rank over seeds, Holm-corrected within the family of one preset; Cohen's d_z).
The interaction test the paper's claim needs: for each seed, the gain g = RedCore − X under
the imbalanced preset minus the same gain under the balanced one, tested against 0 (paired
t-test on the per-seed gains; seeds pair because a seed fixes initialisation and batch order
while the data are the same). Cost: parameters and training samples/s from each run's eval.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable

import yaml

from mmcore.report import stats
from mmcore.report.sources import read_metrics

CONDITIONS = ("a", "v", "l", "a+v", "a+l", "v+l", "a+v+l")
SINGLE = ("a", "v", "l")
REDCORE = "vib + relative_advantage"


def method(values: dict) -> str:
    imputer, balancer = values["model.imputer"], values["balancer"]
    name = imputer["type"].split(".", 1)[1] if isinstance(imputer, dict) else imputer.split(".", 1)[1]
    if isinstance(imputer, dict) and "hide_rate" in imputer:
        name += f" (hide {imputer['hide_rate']})"
    balancer = balancer["type"] if isinstance(balancer, dict) else balancer
    name = f"{name} + {balancer.split('.', 1)[1]}"
    dropout = float(values.get("train.modality_dropout", 0.0))
    return name + (f" + modality dropout {dropout}" if dropout else "")


def load(preset: Path) -> dict[str, dict[int, dict]]:
    """method -> seed -> {"test": results, "cost": ..., "last": ...} of the finished runs of every
    sweep under ``preset`` (one per imputer: docs/protocol.sh)."""
    out: dict[str, dict[int, dict]] = {}
    for info_file in sorted(preset.glob("*/sweep.json")):
        _load_sweep(info_file.parent, out)
    return out


def _load_sweep(sweep: Path, out: dict[str, dict[int, dict]]) -> None:
    info = json.loads((sweep / "sweep.json").read_text())
    for point in info["points"]:
        base = info["base_recipe"]  # the sweep's recipe with its overrides: what a grid does not vary
        values = {"model.imputer": base["model"]["imputer"], "balancer": base["balancer"],
                  "train.modality_dropout": base["train"].get("modality_dropout", 0.0), **point["values"]}
        label = method(values)
        runs = out.setdefault(label, {})
        for seed, rel in point["runs"].items():
            path = sweep / rel / "eval.json"
            if path.is_file():
                if int(seed) in runs:  # one method, one rate per preset: two would pair arbitrarily
                    sys.exit(f"{sweep}: {label} seed {seed} also ran in another sweep of {sweep.parent}")
                evaluation = json.loads(path.read_text())
                train = yaml.safe_load((sweep / rel / "recipe.yaml").read_text())["train"]
                runs[int(seed)] = {"test": evaluation["results"]["test"], "val": evaluation["results"]["val"],
                                   "pooled": evaluation["pooled"]["test"], "cost": evaluation["cost"],
                                   "last": evaluation["best_epoch"] == train["epochs"], "lr": train["optimizer"]["lr"],
                                   # rows of one epoch: its steps (the step of the first validation) x batch
                                   "epoch_rows": read_metrics(sweep / rel / "metrics.jsonl").epochs[0]["step"]
                                   * train["batch_size"]}


def score(run: dict, conditions: tuple[str, ...] = CONDITIONS) -> float:
    return statistics.fmean(run["test"][c]["macro_f1"] for c in conditions)


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def p_text(p: float) -> str:
    return "—" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


Score = Callable[[dict], float]  # one run -> the figure a comparison is made on
SCORES: dict[str, Score] = {"7-condition": lambda run: score(run), "a, v, l": lambda run: score(run, SINGLE)}
# (with, without) pairs whose paired difference says what one ingredient is worth
EFFECTS = (
    ("mmin (hide 0.5) + uniform", "mmin (hide 0.0) + uniform"),
    ("mmin (hide 0.0) + uniform + modality dropout 0.3", "mmin (hide 0.0) + uniform"),
    ("vib + uniform + modality dropout 0.3", "vib + uniform"),
    ("vib + relative_advantage + modality dropout 0.3", "vib + relative_advantage"),
)
Runs = dict[str, dict[int, dict]]  # method -> seed -> run


def preset_tables(name: str, runs: Runs) -> None:
    print(f"\n### Preset `{name}`\n")
    print("| method | lr | seeds | 7-condition avg | a, v, l avg | pooled | " + " | ".join(CONDITIONS) + " | selected last epoch |")
    print("|---|---|---|---|---|---|" + "---|" * len(CONDITIONS) + "---|")
    for m, seeds in runs.items():
        if not seeds:
            print(f"| {m} | — | 0 | not finished |" + " |" * (len(CONDITIONS) + 3))
            continue
        per = [mean_std([s["test"][c]["macro_f1"] for s in seeds.values()]).split(" ±")[0] for c in CONDITIONS]
        pooled = mean_std([s["pooled"]["macro_f1"] for s in seeds.values()]).split(" ±")[0]
        rate = next(iter(seeds.values()))["lr"]  # one per method and preset: load refuses a method in two sweeps of a preset
        print(f"| {m} | {rate:g} | {len(seeds)} | {mean_std([score(s) for s in seeds.values()])} | "
              f"{mean_std([score(s, SINGLE) for s in seeds.values()])} | {pooled} | " + " | ".join(per)
              + f" | {sum(s['last'] for s in seeds.values())}/{len(seeds)} |")


def comparison_rows(label: str, pairs: list[tuple[str, dict[int, float], str, dict[int, float]]]) -> None:
    """One table row per (a, b) pair: paired t-test and Wilcoxon over seeds, Holm over the pairs."""
    found = [stats.compare(*pair) for pair in pairs]
    adjusted = stats.holm([c.t.p if c.t else math.nan for c in found])
    for c, p in zip(found, adjusted):
        if c.t is None:
            print(f"| {label} | {c.a} | {c.b} | {len(c.seeds)} | — | — | — | — | — | n/a |")
            continue
        print(f"| {label} | {c.a} | {c.b} | {len(c.seeds)} | {c.t.mean_diff:+.4f} | {p_text(c.t.p)} | {p_text(p)} | "
              f"{p_text(c.w.p)} | {c.t.cohen_dz:+.2f} | {stats.verdict(c.t.mean_diff, p)} |")


COMPARISON_HEADER = ("| average | method | against | seeds | mean difference | t-test p | Holm p | Wilcoxon p | "
                     "Cohen's d_z | verdict |\n|---|---|---|---|---|---|---|---|---|---|")


def comparisons(runs: Runs, scores: dict[str, Score]) -> None:
    """RedCore against each other method on each score, paired over seeds, Holm within a score."""
    if REDCORE not in runs:
        return
    others = [m for m in runs if m != REDCORE and runs[m]]
    print(f"\nRedCore against each method (paired over seeds; Holm over {len(others)} comparisons per average):\n")
    print(COMPARISON_HEADER)
    for label, f in scores.items():
        red = {k: f(v) for k, v in runs[REDCORE].items()}
        comparison_rows(label, [(REDCORE, red, m, {k: f(v) for k, v in runs[m].items()}) for m in others])


def effects(runs: Runs, scores: dict[str, Score]) -> None:
    """What hiding and modality dropout are worth: each EFFECTS pair that ran, Holm within a score."""
    pairs = [(a, b) for a, b in EFFECTS if runs.get(a) and runs.get(b)]
    if not pairs:
        return
    print(f"\nHiding and modality dropout, with against without (paired over seeds; Holm over {len(pairs)} per average):\n")
    print(COMPARISON_HEADER)
    for label, f in scores.items():
        comparison_rows(label, [(a, {k: f(v) for k, v in runs[a].items()}, b, {k: f(v) for k, v in runs[b].items()})
                                for a, b in pairs])


def interaction(imbalanced: Runs, balanced: Runs, scores: dict[str, Score],
                names: tuple[str, str] = ("imbalanced", "balanced")) -> None:
    print(f"\n### The interaction: is RedCore's gain larger under `{names[0]}` than under `{names[1]}`?\n")
    print("Per seed, gain = RedCore − method; the test is on gain(imbalanced) − gain(balanced) over "
          "seeds (paired t-test; Holm over the methods within one average).\n")
    print("| average | method | seeds | gain, imbalanced | gain, balanced | difference | t-test p | Holm p | Cohen's d_z |")
    print("|---|---|---|---|---|---|---|---|---|")
    if REDCORE not in imbalanced or REDCORE not in balanced:
        return
    for label, f in scores.items():
        rows = []
        for m in imbalanced:
            if m == REDCORE or m not in balanced:
                continue
            seeds = sorted(set(imbalanced[m]) & set(balanced[m]) & set(imbalanced[REDCORE]) & set(balanced[REDCORE]))
            g_imb = [f(imbalanced[REDCORE][s]) - f(imbalanced[m][s]) for s in seeds]
            g_bal = [f(balanced[REDCORE][s]) - f(balanced[m][s]) for s in seeds]
            rows.append((m, seeds, g_imb, g_bal, stats.paired_t(g_imb, g_bal) if len(seeds) >= 2 else None))
        adjusted = stats.holm([r[4].p if r[4] else math.nan for r in rows])
        for (m, seeds, g_imb, g_bal, test), p in zip(rows, adjusted):
            if test is None:
                print(f"| {label} | {m} | {len(seeds)} | — | — | — | — | — | — |")
                continue
            print(f"| {label} | {m} | {len(seeds)} | {statistics.fmean(g_imb):+.4f} | {statistics.fmean(g_bal):+.4f} | "
                  f"{test.mean_diff:+.4f} | {p_text(test.p)} | {p_text(p)} | {test.cohen_dz:+.2f} |")


def balanced_partner(preset: str) -> str:
    """The balanced control of an imbalanced preset: imbalanced2 -> balanced, imbalanced-resample
    -> balanced-resample (docs/protocol.sh's directory names)."""
    return "balanced" + (preset[preset.index("-"):] if "-" in preset else "")


def costs(runs: Runs) -> None:
    print("\n### Cost (from eval.json; one thread per run, two runs at a time on 2 cores)\n")
    print("| method | parameters | training samples/s | seconds per epoch |")
    print("|---|---|---|---|")
    for m, seeds in runs.items():
        if not seeds:
            continue
        first = next(iter(seeds.values()))
        rate = statistics.fmean(s["cost"]["train_samples_per_s"] for s in seeds.values())
        print(f"| {m} | {sum(first['cost']['parameters'].values()):,} | {rate:.0f} | {first['epoch_rows'] / rate:.2f} |")


def tuning_scores(root: Path) -> dict[str, dict[float, float]]:
    """method -> rate -> validation macro-F1 (the 7-condition average, at the epoch validation
    selected) of ``root``'s lr<rate> sweeps: the only data the choice of a rate sees."""
    found: dict[str, dict[float, float]] = {}
    for lr_dir in sorted(root.glob("lr*"), key=lambda d: float(d.name[2:])):
        for m, seeds in load(lr_dir).items():
            if seeds:
                found.setdefault(m, {})[float(lr_dir.name[2:])] = statistics.fmean(
                    s["val"]["average"]["macro_f1"] for s in seeds.values())
    return found


def chosen_rates(found: dict[str, dict[float, float]]) -> dict[str, float]:
    return {m: max(per, key=per.get) for m, per in found.items()}


def tuning(root: Path) -> dict[str, float]:
    """The learning-rate table (one seed, imbalanced preset) and each method's chosen rate."""
    found = tuning_scores(root)
    rates = sorted({lr for per in found.values() for lr in per})
    print("\n### Learning-rate tuning (seed 0, preset `imbalanced`; validation macro-F1, 7-condition average)\n")
    print("| method | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | chosen |")
    print("|---|" + "---|" * (len(rates) + 1))
    best = chosen_rates(found)
    for m, per in found.items():
        cells = [f"{per[lr]:.4f}" if lr in per else "—" for lr in rates]
        print(f"| {m} | " + " | ".join(cells) + f" | {best[m]:g} |")
    return best


# The tuned methods' names and docs/protocol.sh's names for them
SLUGS = {"vib + relative_advantage": "redcore", "vib + uniform": "vib-uniform", "mmin (hide 0.5) + uniform": "mmin",
         "mmin (hide 0.0) + uniform": "mmin0", "zero + uniform": "zero"}


def heatmap(name: str, runs: Runs, out: Path) -> None:
    """Condition × method test macro-F1 (mean over seeds) of one preset, as a PNG under ``out``."""
    from mmcore.report import figures

    methods = [m for m, seeds in runs.items() if seeds]
    if not methods:
        return
    conditions = [c for c in next(iter(runs[methods[0]].values()))["test"] if c != "average"]
    matrix = [[statistics.fmean(s["test"][c]["macro_f1"] for s in runs[m].values()) for m in methods]
              for c in conditions]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.png").write_bytes(figures.heatmap(matrix, conditions, methods, f"test macro-F1, preset {name}"))
    link = out / f"{name}.png"  # as docs/results.md links it when the figures live under docs/
    link = link.relative_to("docs") if link.is_relative_to("docs") else link
    print(f"\n![test macro-F1 per condition, preset {name}]({link})")


def figures_option(args: list[str]) -> tuple[list[str], Path | None]:
    """The command line without ``--figures DIR``, and DIR (None without it)."""
    if "--figures" not in args:
        return args, None
    at = args.index("--figures")
    return args[:at] + args[at + 2:], Path(args[at + 1])


def report(root: Path, presets: list[str], table: Callable[[str, Runs], None],
           scores: dict[str, Score], figures: Path | None = None) -> None:
    """Every preset's ``table``, comparisons and effects, the interaction of each imbalanced preset
    with its balanced control where both ran, the cost; with ``figures``, a heatmap per preset."""
    if (root / "tune").is_dir():
        tuning(root / "tune")
    loaded = {p: load(root / p) for p in presets if list((root / p).glob("*/sweep.json"))}
    for name, runs in loaded.items():
        table(name, runs)
        if figures is not None:
            heatmap(name, runs, figures)
        comparisons(runs, scores)
        effects(runs, scores)
    for name in loaded:
        if name.startswith("imbalanced") and balanced_partner(name) in loaded:
            interaction(loaded[name], loaded[balanced_partner(name)], scores, (name, balanced_partner(name)))
    if loaded:
        costs(next(iter(loaded.values())))


if __name__ == "__main__":
    args, figures_dir = figures_option(sys.argv[1:])
    if args[0] == "--chosen":  # for docs/protocol.sh: "<slug> <rate>" per tuned method
        for m, lr in chosen_rates(tuning_scores(Path(args[1]))).items():
            if m in SLUGS:
                print(SLUGS[m], lr)
        sys.exit(0)
    report(Path(args[0]), args[1:], preset_tables, SCORES, figures_dir)
