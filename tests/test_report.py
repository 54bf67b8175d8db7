"""mmcore report: the page parses, every image decodes, nothing points to the network, and the
numbers in its tables equal those in eval.json / results.csv."""

from __future__ import annotations

import base64
import html
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from mmcore.errors import MMCoreError
from mmcore.report.html import number

pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL.Image")

from mmcore.report import build_report  # noqa: E402  (after the skip: needs matplotlib)

CONDITIONS = {"a": (0.60, 0.55), "v": (0.40, 0.35), "a+v": (0.90, 0.88)}  # accuracy, macro_f1


class Page(HTMLParser):
    """Tables by id (rows of cell texts) and image sources of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"] or "")
        for key in ("href", "src", "action"):
            if a.get(key):
                self.links.append(a[key] or "")

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def parse(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert text.lstrip().startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"(https?:)?//[A-Za-z0-9]", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text))
    assert all(link.startswith("data:image/png;base64,") for link in page.links)
    for src in page.images:  # every image decodes as a PNG
        image = PIL.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
        assert image.format == "PNG"
    return page


def fake_run(root: Path, seed: int = 0, shift: float = 0.0, grad_norms: bool = True) -> Path:
    """A finished run directory as the engine writes it: two modalities a, v."""
    run = root / f"run{seed}"
    run.mkdir(parents=True)
    recipe = {"name": "fake", "seed": seed, "dataset": {"type": "mmcore.synthetic"},
              "model": {"encoders": {"default": {"type": "mmcore.mlp"}}, "imputer": {"type": "mmcore.zero"},
                        "fusion": {"type": "mmcore.concat"}},
              "balancer": {"type": "mmcore.uniform"}, "train": {"select": "val.macro_f1"}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    lines = []
    for step in (2, 4, 6):
        line = {"step": step, "epoch": 1, "lr": 1e-3, "loss": 2.0 / step, "task_loss": 1.0 / step,
                "unimodal.a": 0.5 / step, "unimodal.v": 0.7 / step}
        if grad_norms:
            line.update({"grad_norm.a": 0.1 * step, "grad_norm.v": 0.05 * step})
        lines.append(line)
    lines.append({"epoch": 1, "step": 6, "val.accuracy": 0.5, "val.macro_f1": 0.4, "select.val.macro_f1": 0.4})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    table = {c: {"accuracy": acc + shift, "macro_f1": f1 + shift} for c, (acc, f1) in CONDITIONS.items()}
    table["average"] = {k: sum(r[k] for r in table.values()) / 3 for k in ("accuracy", "macro_f1")}
    (run / "eval.json").write_text(json.dumps({"best_epoch": 1, "select": "val.macro_f1",
                                               "results": {"val": table, "test": table}}))
    return run


def rows_by_first_cell(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table[1:]}


def test_run_report_tables_match_eval_json(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    written = build_report(run, tmp_path / "out" / "report.html")
    page = parse(written[0])
    assert len(page.images) == len(written) - 1 >= 5  # loss, validation, unimodal terms, grad norms, conditions, shapley
    for png in written[1:]:
        assert png.read_bytes().startswith(b"\x89PNG") and png.parent.name == "report_figures"
    results = json.loads((run / "eval.json").read_text())["results"]["test"]
    header, *_ = page.tables["conditions"]
    cells = rows_by_first_cell(page.tables["conditions"])
    assert set(cells) == set(results)
    for condition, row in results.items():
        for metric, value in row.items():
            assert cells[condition][header.index(metric) - 1] == number(value)
    # Shapley with v(∅) = 0: accuracy a = (0.6 + 0.9 − 0.4)/2 = 0.55, v = (0.4 + 0.9 − 0.6)/2 = 0.35
    shapley = rows_by_first_cell(page.tables["shapley"])
    assert shapley["accuracy"] == [number(0.55), number(0.35), number(0.9)]
    text = written[0].read_text()
    assert 'data-file="grad-norm.png"' in text and "gradient norms: not recorded" not in text
    assert 'data-file="validation.png"' in text


def test_run_report_says_what_was_not_recorded(tmp_path: Path) -> None:
    run = fake_run(tmp_path, grad_norms=False)
    table = json.loads((run / "eval.json").read_text())
    del table["results"]["test"]["v"]
    (run / "eval.json").write_text(json.dumps(table))
    with open(run / "metrics.jsonl", "a") as fh:  # an epoch line as runs before the logger kind wrote it
        fh.write(json.dumps({"epoch": 2, "step": 8, "val": {"accuracy": 0.6, "macro_f1": 0.5}}) + "\n")
    text = build_report(run, tmp_path / "r.html")[0].read_text()
    assert 'data-file="validation.png"' in text
    assert "Per-modality encoder gradient norms: not recorded by this run." in text
    assert "Modality contributions: not available: 1 of 3 subsets were not evaluated (v)" in text
    assert "with a smaller train.log_every" in text  # a short run: the report names the setting (issue 24)


def test_run_report_shows_robustness_curves(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    curve_dir = run / "evals" / "curve"
    curve_dir.mkdir(parents=True)
    curve = {"split": "test", "metrics": ["macro_f1"], "draws": 2, "min_present": 1, "full": {"macro_f1": 0.88},
             "curves": {"uniform": {"rates": [0.0, 0.5], "mean": {"macro_f1": [0.88, 0.5]}, "std": {"macro_f1": [0.0, 0.1]},
                                    "robustness": {"macro_f1": {"auc": 0.345, "mean": 0.69, "relative": 0.69 / 0.88}}}}}
    (curve_dir / "curve.json").write_text(json.dumps(curve))
    page = parse(build_report(run, tmp_path / "r.html")[0])
    assert rows_by_first_cell(page.tables["robustness-curve"])["uniform"] == [number(0.345), number(0.69), number(0.69 / 0.88)]


def fake_sweep(root: Path, n_seeds: int = 3) -> Path:
    sweep = root / "sweep"
    points = []
    rows = []
    for k, (name, shift) in enumerate((("mmcore.uniform", 0.0), ("redcore.relative_advantage", 0.05))):
        slug = f"balancer={name}"
        runs = {}
        per_seed = []
        for seed in range(n_seeds):
            run = fake_run(sweep / "points" / slug, seed, shift + 0.01 * seed * (k + 1))
            runs[str(seed)] = str(run.relative_to(sweep))
            per_seed.append(json.loads((run / "eval.json").read_text())["results"]["test"])
        points.append({"slug": slug, "overrides": [f"balancer={name}"], "values": {"balancer": name}, "runs": runs})
        for condition in per_seed[0]:
            for metric in ("accuracy", "macro_f1"):
                values = [r[condition][metric] for r in per_seed]
                mean = sum(values) / n_seeds
                std = (sum((v - mean) ** 2 for v in values) / (n_seeds - 1)) ** 0.5
                rows.append([slug, name, "test", condition, metric, repr(mean), repr(std), n_seeds])
    (sweep / "sweep.json").write_text(json.dumps({"recipe": "fake.yaml", "seeds": list(range(n_seeds)), "points": points,
                                                  "base_recipe": {"train": {"select": "val.macro_f1"}}}))
    with open(sweep / "results.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["point", "balancer", "split", "condition", "metric", "mean", "std", "n"])
        writer.writerows(rows)
    return sweep


def test_sweep_report_tables_match_results_csv(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path)
    written = build_report(sweep, tmp_path / "s.html")
    page = parse(written[0])
    assert len(page.images) == 1  # the heatmap; no curves were evaluated
    with open(sweep / "results.csv", newline="") as fh:
        source = [r for r in csv.DictReader(fh) if r["condition"] == "average"]
    header, *_ = page.tables["configurations"]
    cells = rows_by_first_cell(page.tables["configurations"])
    for r in source:
        row = cells[f"balancer={r['balancer']}"]
        assert row[header.index(f"{r['metric']} mean") - 1] == number(float(r["mean"]))
        assert row[header.index(f"{r['metric']} std") - 1] == number(float(r["std"]))
    paired = page.tables["paired"]
    assert paired[1][:3] == ["balancer=mmcore.uniform", "balancer=redcore.relative_advantage", "3"]
    # per-seed average macro-F1 differences: −0.05 − 0.01·seed → mean −0.06
    assert paired[1][3] == number(-0.06)
    assert paired[1][-1] == "n too small" and "win-tie-loss" not in page.tables  # 3 seeds: numbers, no verdict
    # the heatmap's companion table: macro_f1 by number of present modalities, per configuration
    by_present = rows_by_first_cell(page.tables["sweep-by-present"])
    assert by_present["balancer=mmcore.uniform"] == [number((0.35 + 0.55) / 2 + 0.01), number(0.88 + 0.01)]


@pytest.mark.parametrize("n", [4, 5])
def test_sweep_report_says_n_too_small_only_below_five_seeds(tmp_path: Path, n: int) -> None:
    """Issue 22: at 5 seeds neither a row nor a note of the report says "n too small"."""
    written = build_report(fake_sweep(tmp_path, n_seeds=n), tmp_path / "s.html")
    assert ("n too small" in written[0].read_text(encoding="utf-8")) is (n < 5)


def test_sweep_report_gives_verdicts_from_five_seeds(tmp_path: Path) -> None:
    page = parse(build_report(fake_sweep(tmp_path, n_seeds=5), tmp_path / "s.html")[0])
    assert page.tables["paired"][1][-1] in ("win", "tie", "loss")
    wtl = page.tables["win-tie-loss"][1]
    assert sum(int(x) for x in wtl[2:]) == 3  # three conditions


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MMCoreError, match="no such directory"):
        build_report(tmp_path / "nope", tmp_path / "r.html")
    with pytest.raises(MMCoreError, match="neither a run directory"):
        build_report(tmp_path, tmp_path / "r.html")
    with pytest.raises(MMCoreError, match="expected an .html"):
        build_report(tmp_path, tmp_path / "r.png")
    run = fake_run(tmp_path)
    (run / "eval.json").write_text("{broken")
    with pytest.raises(MMCoreError, match="eval.json: not valid JSON"):
        build_report(run, tmp_path / "r.html")


def test_a_metric_the_results_do_not_hold_is_one_line(tmp_path: Path) -> None:
    """``--metric`` must name a metric of the results (it used to drop the metric figures silently)."""
    run = fake_run(tmp_path / "run")
    with pytest.raises(MMCoreError, match=r"--metric: 'nonexist' is not in these results; expected one of .*macro_f1"):
        build_report(run, tmp_path / "r.html", metric="nonexist")
    with pytest.raises(MMCoreError, match=r"--metric: 'nonexist' is not in these results"):
        build_report(fake_sweep(tmp_path / "sweep", n_seeds=2), tmp_path / "s.html", metric="nonexist")
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "s.html").exists()
    assert build_report(run, tmp_path / "ok.html", metric="accuracy")[0].is_file()


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_matplotlib(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(MMCoreError, match=r"pip install 'mmcore\[report\]'"):
        build_report(fake_run(tmp_path), tmp_path / "r.html")


# --- readability at many conditions (issue 24) -------------------------------------------------

THREE = ("a", "v", "t")


def wide_run(root: Path) -> Path:
    """A finished run with three modalities (7 conditions), a confusion matrix, validation losses
    and a four-curve robustness evaluation: everything the readable report draws."""
    run = fake_run(root)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["missing"] = {"train": {"rates": {"a": 0.1, "v": 0.5, "t": 0.7}}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (run / "manifest.json").write_text(json.dumps({"mmcore": "0.1.0", "data_sha256": {"train": "ab" * 32}}))
    score = {"a": 0.5, "v": 0.3, "t": 0.4, "a+v": 0.7, "a+t": 0.8, "v+t": 0.6, "a+v+t": 0.9}
    table = {c: {"accuracy": s, "macro_f1": s - 0.1} for c, s in score.items()}
    table["average"] = {k: sum(r[k] for r in table.values()) / 7 for k in ("accuracy", "macro_f1")}
    confusion = {"classes": ["x", "y"], "condition": "a+v+t", "matrix": [[5, 1], [2, 7]], "pooled": [[30, 5], [9, 40]]}
    (run / "eval.json").write_text(json.dumps({"best_epoch": 1, "select": "val.macro_f1", "results": {"test": table},
                                               "confusion": {"test": confusion}}))
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 2, "step": 8, "val.macro_f1": 0.5, "val_loss": 0.9}) + "\n")
    rates = [0.0, 0.5, 1.0]
    curves = {name: {"rates": rates, "mean": {"macro_f1": [0.8, 0.6 - k / 10, 0.4]}, "std": {"macro_f1": [0, 0, 0]},
                     "robustness": {"macro_f1": {"auc": 0.6, "mean": 0.6, "relative": 0.75}}}
              for k, name in enumerate(("uniform", *THREE))}
    (run / "evals" / "curve").mkdir(parents=True)
    (run / "evals" / "curve" / "curve.json").write_text(json.dumps({"split": "test", "metrics": ["macro_f1"], "draws": 2,
                                                                   "curves": curves}))
    return run


def test_run_report_groups_and_sorts_conditions(tmp_path: Path) -> None:
    run = wide_run(tmp_path)
    written = build_report(run, tmp_path / "r.html")
    page = parse(written[0])
    order = [row[0] for row in page.tables["conditions"][1:]]
    # by number present, then macro_f1 best first; the average last
    assert order == ["a", "t", "v", "a+t", "a+v", "v+t", "a+v+t", "average"]
    assert [row[1] for row in page.tables["conditions"][1:]] == ["1", "1", "1", "2", "2", "2", "3", ""]
    by_present = rows_by_first_cell(page.tables["by-present"])
    assert by_present["2"] == ["3", number(0.6), number(0.5), number(0.7)]  # mean, min, max of macro_f1 over a+t, a+v, v+t
    assert rows_by_first_cell(page.tables["shapley"])["training missing rate"] == [number(0.1), number(0.5), number(0.7), ""]
    text = written[0].read_text()
    for figure in ("by-present-macro_f1", "conditions-macro_f1", "confusion", "shapley", "training-loss", "curve-curve"):
        assert f'data-file="{figure}.png"' in text
    assert "the validation task loss is averaged over the evaluation conditions" in text  # val_loss drawn with the training loss
    recipe = re.search(r'<pre id="recipe">(.*?)</pre>', text, re.S)
    assert recipe and "rates:" in recipe.group(1) and '<pre id="manifest">' in text and "ab" * 32 in text


def overflow_probe(report: Path, out: Path) -> Path:
    """A copy of the page with a script that records, in the DOM, every element wider than the
    window or cut off inside its scroll box — what a reader would see as a clipped table or figure."""
    probe = """<script>
window.addEventListener('load', () => {
  const wide = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.right > window.innerWidth + 1 || e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
      wide.push(e.tagName + (e.id ? '#' + e.id : ''));
  }
  const p = document.createElement('p'); p.id = 'overflow'; p.textContent = JSON.stringify(wide);
  document.body.appendChild(p);
});
</script></body>"""
    out.write_text(report.read_text(encoding="utf-8").replace("</body>", probe), encoding="utf-8")
    return out


def long_labels(sweep: Path) -> Path:
    """The fake sweep with configuration labels as long as real override sets make them."""
    info = json.loads((sweep / "sweep.json").read_text())
    for point in info["points"]:
        point["values"] = {"balancer": {"type": point["values"]["balancer"], "target": "recon", "rho": 0.7},
                           "model.fusion": {"type": "mmcore.concat", "layers": [128, 128], "dropout": 0.5}}
    (sweep / "sweep.json").write_text(json.dumps(info))
    return sweep


@pytest.mark.parametrize(("kind", "width"), [("run", 800), ("run", 1280), ("sweep", 800)])
def test_report_fits_common_widths_in_a_real_browser(tmp_path: Path, kind: str, width: int) -> None:
    """Headless Chromium renders the page: nothing is wider than the window or clipped, and the
    screenshot is a real picture (skipped where no Chromium is installed)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on PATH")
    source = wide_run(tmp_path) if kind == "run" else long_labels(fake_sweep(tmp_path))
    report = build_report(source, tmp_path / "r.html")[0]
    probe = overflow_probe(report, tmp_path / "probe.html")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},3000"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<p id="overflow">(.*?)</p>', dom)
    assert found, "the browser did not run the page"
    assert json.loads(html.unescape(found.group(1))) == []
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    image = PIL.open(shot).convert("L")
    assert image.size == (width, 3000)
    assert sum(image.histogram()[:128]) > 1000  # dark pixels: text and figures, not a blank page


def test_a_run_shorter_than_the_curve_says_so(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    lines = [{"step": s, "epoch": 1, "loss": 1.0 / s, "task_loss": 0.5 / s} for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    text = build_report(run, tmp_path / "r.html")[0].read_text()
    assert "The run had 3 optimisation steps, every one logged" in text and "smaller train.log_every" not in text
