"""The Bayes ceiling where results are read: the run's printed table, `mmcore eval` and the report."""

from __future__ import annotations

import json

from rich.console import Console

from mmcore.engine.progress import results_table
from mmcore.testing import short_run, tiny_recipe

LATENT = {"type": "mmcore.synthetic", "modalities": 3, "classes": 3, "samples": 60, "dim": 4, "tau": 1.0}


def render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_results_table_shows_ceiling_and_gap() -> None:
    results = {"a": {"accuracy": 0.5, "macro_f1": 0.4}, "average": {"accuracy": 0.5, "macro_f1": 0.4}}
    oracle = {"a": {"accuracy": 0.75}, "average": {"accuracy": 0.75}}
    text = render(results_table("t", results, oracle=oracle))
    assert "accuracy ceiling" in text and "accuracy gap" in text and "0.7500" in text and "0.2500" in text
    assert "ceiling" not in render(results_table("t", results))


def test_eval_and_report_show_the_ceiling(tmp_path) -> None:
    from mmcore.after.evaluation import evaluate_run
    from mmcore.report.run import run_document

    done = short_run(tiny_recipe(tmp_path, "train.epochs=1", dataset=LATENT))
    result = evaluate_run(done.run_dir, ["missing.eval.conditions=[m0, m0+m1+m2]"])
    assert set(result.oracle) == {"m0", "m0+m1+m2", "average"}
    assert result.oracle["m0"]["accuracy"] < result.oracle["m0+m1+m2"]["accuracy"]  # more modalities, higher ceiling
    written = json.loads((result.out_dir / "eval.json").read_text())["oracle"]["results"]["test"]
    assert written == result.oracle
    html = run_document(done.run_dir).render()
    assert "Bayes ceiling" in html and "accuracy gap" in html
