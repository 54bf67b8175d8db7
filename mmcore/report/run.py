"""The report of one run: what it was, how training went, and how the model fares per condition.

Sections: summary; training and validation loss together, validation metrics; per-modality loss
terms; the balancer's values over steps; per-modality encoder gradient norms
(``grad_norm.<modality>``, or "not recorded"); test metrics per condition, grouped by the number
of present modalities and sorted (:mod:`mmcore.report.percondition`); the confusion matrix;
modality contributions (exact Shapley values) beside training missing rates; MissBench
diagnostics; robustness curves (small multiples when they would overlap) and other evaluations
found under ``evals/``; cost figures; the full recipe and manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmcore.conditions import AVERAGE
from mmcore.report import figures
from mmcore.report.diagnostics import diagnostics_section
from mmcore.report.html import Document, number
from mmcore.report.sources import (
    GRAD_NORM,
    VAL_LOSS,
    Metrics,
    chosen_metric,
    later_evals,
    read_eval,
    read_json,
    read_metrics,
    read_yaml,
    select_metric,
)
from mmcore.report.percondition import (
    conditions_section,
    confusion_section,
    contributions_section,
    ordered,
    sources_section,
)
from mmcore.report.shapley import modalities_of

COST_KEYS = ("cost", "costs")  # where eval.json or the manifest keep parameter counts, throughput, memory


def _type(node: Any) -> str:
    return str(node.get("type")) if isinstance(node, dict) else str(node)


def _rates(spec: dict[str, Any]) -> str:
    """``fou 0.1, fac 0.7`` or ``sample rate 0.5``: the training protocol in a few words."""
    if spec.get("sample_rate") is not None:
        return f"sample rate {spec['sample_rate']}"
    rates = spec.get("rates") or {}
    return ", ".join(f"{m} {r:g}" if isinstance(r, (int, float)) else f"{m} {r}" for m, r in rates.items()) or "none"


def _balancer_keys(recipe: dict[str, Any], modalities: list[str]) -> set[str] | None:
    """The names the run's balancer logs (its ``log_values``), found by building it; None if it cannot be."""
    node = recipe.get("balancer")
    if not isinstance(node, dict) or "type" not in node:
        return None
    try:
        from mmcore.plugins import get_registry

        component = get_registry().get("balancer", node["type"])
        rates = {m: 0.0 for m in modalities}  # the logged names do not depend on the rates
        built = component.build({"modalities": list(modalities), "missing_rates": rates},
                                {k: v for k, v in node.items() if k != "type"})
        return set(built.log_values())
    except Exception:  # a plugin that is not installed here: the traces are still shown, unlabelled
        return None


def run_document(run_dir: Path, metric: str | None = None) -> Document:
    recipe = read_yaml(run_dir / "recipe.yaml")
    evaluation = read_eval(run_dir / "eval.json") if (run_dir / "eval.json").is_file() else None
    metrics = read_metrics(run_dir / "metrics.jsonl")
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    results = (evaluation or {}).get("results", {})
    test = results.get("test") or next(iter(results.values()), {})
    modalities = modalities_of([c for c in test if c != AVERAGE]) or []
    available = list(test.get(AVERAGE, {}))
    metric = chosen_metric(metric, select_metric(recipe) or next(iter(available), None), available)

    doc = Document(f"mmcore report: {recipe.get('name', run_dir.name)}")
    _summary(doc, run_dir, recipe, evaluation, manifest, metric)
    _training(doc, metrics, (recipe.get("train") or {}).get("log_every"))
    _per_modality(doc, metrics, recipe, modalities)
    conditions_section(doc, test, metric, modalities)
    _ceiling(doc, evaluation or {}, test)
    confusion_section(doc, evaluation or {})
    contributions_section(doc, test, modalities, recipe, metric)
    diagnostics_section(doc, evaluation or {}, test, metric)
    _later(doc, run_dir, metric)
    _costs(doc, evaluation or {}, manifest)
    sources_section(doc, recipe, manifest)
    return doc


def _summary(doc: Document, run_dir: Path, recipe: dict, evaluation: dict | None, manifest: dict, metric: str | None) -> None:
    model = recipe.get("model") or {}
    rows = [
        ["run directory", str(run_dir)],
        ["dataset", _type(recipe.get("dataset"))],
        ["encoders", ", ".join(f"{k}: {_type(v)}" for k, v in (model.get("encoders") or {}).items())],
        ["imputer", _type(model.get("imputer"))],
        ["fusion", _type(model.get("fusion"))],
        ["balancer", _type(recipe.get("balancer"))],
        ["seed", recipe.get("seed", "")],
        ["training missingness", _rates(((recipe.get("missing") or {}).get("train") or {}))],
        ["selection", str((evaluation or {}).get("select", (recipe.get("train") or {}).get("select", "")))],
        ["best epoch", (evaluation or {}).get("best_epoch", "not finished")],
        ["device", manifest.get("device", "not recorded")],
        ["mmcore", manifest.get("mmcore", "not recorded")],
    ]
    doc.heading("Summary")
    doc.table(["", ""], rows, "summary")
    if evaluation is None:
        doc.text("No eval.json: the run has not finished; only its training record is shown.", note=True)
    elif metric:
        test = evaluation["results"].get("test", {})
        if AVERAGE in test and metric in test[AVERAGE]:
            doc.text(f"Test {metric}, average over {len(test) - 1} conditions: {number(test[AVERAGE][metric])}.")


def _ceiling(doc: Document, evaluation: dict[str, Any], test: dict[str, dict[str, float]]) -> None:
    """The data's Bayes ceiling per test condition and the model's gap to it (``mmcore.oracle``)."""
    from mmcore.oracle import ORACLE, gap_rows

    entry = evaluation.get(ORACLE)
    ceiling = ((entry or {}).get("results") or {}).get("test") if isinstance(entry, dict) else None
    if not ceiling:
        return
    gaps = gap_rows(test, ceiling)
    keys = list(dict.fromkeys(k for row in gaps.values() for k in row))
    doc.heading("Bayes ceiling")
    doc.text(f"The best any model can score on this data's law, per test condition ({entry.get('method', '')}); "
             "gap = ceiling − model (model − ceiling for mse), so 0 is the best possible.")
    doc.table(["condition", *[k.replace("_", " ") for k in keys]],
              [[c, *[gaps[c].get(k, math.nan) for k in keys]] for c in gaps], "ceiling")


FEW_POINTS = 20  # fewer logged steps than this make a loss curve hard to read


def _training(doc: Document, metrics: Metrics, log_every: object = None) -> None:
    doc.heading("Training")
    _few_points_note(doc, metrics, log_every)
    if not metrics.steps and not metrics.epochs:
        doc.text("No metrics.jsonl lines: nothing was logged.", note=True)
        return
    task, total, val_loss = metrics.series("task_loss"), metrics.series("loss"), metrics.epoch_series(VAL_LOSS)
    series = {"training task_loss": task} if task[0] else {}
    if val_loss[0]:
        series["validation task_loss (end of each epoch)"] = val_loss
    if series:  # the same loss on both splits, on one scale: the gap is over- or under-fitting
        doc.figure("training-loss", figures.lines(series, "training and validation task loss", "step", "task loss"))
        doc.text("Training values are means over each logging interval, under the training masks; the validation "
                 "task loss is averaged over the evaluation conditions, with every stochastic part at its mean.", note=True)
    if total[0] and total[1] != task[1]:  # the imputer's and heads' terms make the total much larger
        doc.figure("training-total-loss", figures.lines({"training loss (all terms)": total},
                                                         "training loss: task loss plus every loss group", "step", "loss"))
    val_names = list(dict.fromkeys(k for e in metrics.epochs for k in e["val"]))
    if val_names:
        val = {k: ([float(e["epoch"]) for e in metrics.epochs if k in e["val"]],
                   [float(e["val"][k]) for e in metrics.epochs if k in e["val"]]) for k in val_names}
        doc.figure("validation", figures.lines(val, "validation metrics per epoch (average over conditions)", "epoch", "value",
                                               panels=len(val) > 3))


def _few_points_note(doc: Document, metrics: Metrics, log_every: object) -> None:
    """Fewer than FEW_POINTS step lines: say whether the run was that short or the interval too long."""
    logged = len(metrics.steps)
    if logged >= FEW_POINTS:
        return
    last = max((int(r["step"]) for r in metrics.steps), default=0)
    if logged and last == logged:  # every step has its line: the run itself is that short
        doc.text(f"The run had {last} optimisation steps, every one logged; a longer run draws a smoother curve.", note=True)
        return
    interval = "automatic" if log_every is None else log_every
    doc.text(f"{logged} training steps were logged (train.log_every={interval}); for a curve with "
             f"at least {FEW_POINTS} points, run again with a smaller train.log_every.", note=True)


def _per_modality(doc: Document, metrics: Metrics, recipe: dict, modalities: list[str]) -> None:
    names = modalities or _modalities_from_keys(metrics)
    prefixes = metrics.per_modality(names)
    balancer = _balancer_keys(recipe, names) or set()
    losses = [p for p in prefixes if p not in balancer and p != GRAD_NORM]
    doc.heading("Per-modality loss terms")
    if not losses:
        doc.text("No per-modality loss terms were logged.", note=True)
    for prefix in losses:
        series = {m: metrics.series(f"{prefix}.{m}") for m in prefixes[prefix]}
        doc.figure(f"loss-{prefix}", figures.lines(series, f"loss group '{prefix}' per modality", "step", "loss"))
    doc.heading("Balancer")
    doc.text(f"balancer: {_type(recipe.get('balancer'))}")
    shown = [p for p in prefixes if p in balancer]
    if not shown:
        doc.text("The balancer logs no per-modality values (fixed weights).", note=True)
    for prefix in shown:
        series = {m: metrics.series(f"{prefix}.{m}") for m in prefixes[prefix]}
        doc.figure(f"balancer-{prefix}", figures.lines(series, f"balancer value '{prefix}' per modality", "step", prefix))
    doc.heading("Encoder gradient norms")
    if GRAD_NORM in prefixes:
        series = {m: metrics.series(f"{GRAD_NORM}.{m}") for m in prefixes[GRAD_NORM]}
        doc.figure("grad-norm", figures.lines(series, "encoder gradient norm per modality", "step", "‖∇‖", logy=True))
        doc.text("A modality whose encoder gets much smaller gradients than the others is being under-trained "
                 "(the usual sign of modality imbalance).", note=True)
    else:
        doc.text("Per-modality encoder gradient norms: not recorded by this run.", note=True)


def _modalities_from_keys(metrics: Metrics) -> list[str]:
    suffixes = [k.rpartition(".")[2] for r in metrics.steps for k in r if k.startswith(f"{GRAD_NORM}.")]
    return list(dict.fromkeys(suffixes))


def _later(doc: Document, run_dir: Path, metric: str | None) -> None:
    doc.heading("Later evaluations and robustness curves")
    found = later_evals(run_dir)
    if not found:
        doc.text("None under evals/ (see `mmcore eval RUN --curve`).", note=True)
        return
    for label, entry in found.items():
        doc.heading(label, 3)
        curve = entry["curve"]
        if curve is not None:
            _curve(doc, label, curve, metric)
        elif entry["eval"] is not None:
            split = entry["eval"].get("split", "test")
            table = entry["eval"]["results"].get(split) or next(iter(entry["eval"]["results"].values()), {})
            names = list(dict.fromkeys(k for row in table.values() for k in row))
            order = ordered(table, metric, modalities_of([c for c in table if c != AVERAGE]) or [])
            doc.table(["condition", *names], [[c, *[table[c].get(k, math.nan) for k in names]] for c in order],
                      f"evals-{label}")


def _curve(doc: Document, label: str, curve: dict[str, Any], metric: str | None) -> None:
    metric = metric if metric in curve.get("metrics", []) else (curve.get("metrics") or [None])[0]
    if metric is None:
        return
    series = {name: (c["rates"], c["mean"][metric], c["std"][metric]) for name, c in curve["curves"].items()}
    doc.figure(f"curve-{label}", figures.curves(series, f"{curve.get('split', 'test')} {metric} against the missing rate",
                                                 "missing rate", metric))
    rows = [[name, c["robustness"][metric]["auc"], c["robustness"][metric]["mean"], c["robustness"][metric]["relative"]]
            for name, c in curve["curves"].items()]
    doc.table(["curve", "AUC (trapezoid)", "mean level", "relative robustness"], rows, f"robustness-{label}")
    doc.text("AUC = Σ (r_{k+1} − r_k)(f_k + f_{k+1})/2; mean level = AUC / (r_K − r_0); relative robustness = "
             "mean level / full-modality score (MultiBench's area-under-curve robustness, see mmcore.report.robustness). "
             f"{curve.get('draws', '?')} seeded draws per rate; bands are ± std over draws.", note=True)


def _costs(doc: Document, evaluation: dict[str, Any], manifest: dict[str, Any]) -> None:
    doc.heading("Cost")
    cost = next((src[k] for src in (evaluation, manifest) for k in COST_KEYS if isinstance(src.get(k), dict)), None)
    if not cost:
        doc.text("Cost figures (parameters, samples/s, memory): not recorded by this run.", note=True)
        return
    rows = [[k, v if isinstance(v, (int, float)) else str(v)] for k, v in _flatten(cost).items()]
    doc.table(["figure", "value"], rows, "cost")


def _flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
