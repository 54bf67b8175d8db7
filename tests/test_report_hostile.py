"""Report outputs against names and numbers that users and plugins can put in them.

Arm, level, condition and metric names with ``|``, backticks, newlines, ``<script>``, ``&``, ``$``
and leading ``=``/``+``/``-``/``@``; values that are NaN, ±inf, null, -0.0, 1e300 or 1.7e308; a
sweep with one configuration. Each output keeps its structure (markdown columns, LaTeX that
compiles, CSV that round-trips, HTML that is escaped, figure files inside their folder) and shows
a number that is not one as 'n/a', never as 0.0000 or a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmcore.engine.record import read_eval
from mmcore.errors import MMCoreError
from mmcore.report.html import Document, number
from mmcore.study.outputs import Table, _mean_sd, _tex, fmt, latex, markdown

ROOT = Path(__file__).resolve().parents[1]
ARM_A, ARM_B = "=cmd|x", "<i>&amp;$^$"  # both pass the study file's name check (one folder name each)
LEVEL = "@lvl|1"
ODD_CONDITION = "-rnd|`q`\n="  # a random-mask condition name from a plugin: a newline and a pipe
ODD_METRIC = "+m|`x`<script>"


def md_cells(line: str) -> list[str]:
    """A markdown table row split on its unescaped pipes, as GFM splits it (a backslash escapes)."""
    cells, cell, escaped = [], "", False
    for c in line.strip()[1:-1]:
        if escaped:
            cell, escaped = cell + c, False
        elif c == "\\":
            cell, escaped = cell + c, True
        elif c == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += c
    return [*cells, cell]


def md_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text (consecutive lines starting with '|'), rows of raw cells."""
    tables: list[list[list[str]]] = []
    inside = False
    for line in text.split("\n"):
        if line.startswith("|"):
            if not inside:
                tables.append([])
            tables[-1].append(md_cells(line))
        inside = line.startswith("|")
    return tables


class Cells(HTMLParser):
    """Texts of the ``td``/``th`` cells of an HTML page, as a browser shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None


def rendered_cells(markdown_text: str) -> list[str]:
    """The cell texts a GFM renderer shows for the markdown (markdown-it, a dependency of rich)."""
    from markdown_it import MarkdownIt

    page = Cells()
    page.feed(MarkdownIt("commonmark").enable("table").render(markdown_text))
    return page.cells


def test_markdown_tables_keep_their_columns() -> None:
    table = Table(f"per condition at {LEVEL}", ["condition", ARM_A, ARM_B],
                  [[ODD_CONDITION, 0.5, math.nan], ["a\\|b", -0.0, 1e300]], [f"note with {ARM_B}\nand a second line"])
    text = markdown("s|`<b>`", None, [table])
    (rows,) = md_tables(text)
    assert [len(r) for r in rows] == [3, 3, 3, 3]  # header, delimiter, two rows
    assert "| =cmd\\|x | \\<i>\\&amp;\\$^\\$ |" in text
    assert "| -rnd\\|\\`q\\` = | 0.5000 | n/a |" in text  # the newline is a space: the row stays one line
    assert "| a\\\\\\|b | 0.0000 | 1.0000e+300 |" in text  # a backslash before a pipe cannot unescape it
    assert "# Study s\\|\\`\\<b>\\`" in text and "note with \\<i>\\&amp;\\$^\\$ and a second line" in text
    assert rendered_cells(text) == ["condition", ARM_A, ARM_B, "-rnd|`q` =", "0.5000", "n/a", "a\\|b", "0.0000", "1.0000e+300"]


def test_latex_escapes_every_special_character() -> None:
    assert _tex("a$^$ {x}_%#&~|<>\\\n\nb") == (r"a\$\textasciicircum{}\$ \{x\}\_\%\#\&\textasciitilde{}\textbar{}"
                                               r"\textless{}\textgreater{}\textbackslash{}  b")
    assert _tex("0.5 ± 0.1 −") == r"0.5 $\pm$ 0.1 -"  # the two symbols the tables print on purpose
    out = latex([Table("title\n\\input{x}", ["a"], [[1]])], ["note\nline"])
    assert "% title \\input{x}\n" in out and "% note line\n" in out  # a comment stays one line


def test_numbers_nan_inf_negative_zero_huge_tiny() -> None:
    assert [number(v) for v in (math.nan, math.inf, -math.inf, -0.0, 1e300, -1e16, 1e15 - 1, 1e-12, 7)] == [
        "n/a", "inf", "-inf", "0.0000", "1.0000e+300", "-1.0000e+16", "999999999999999.0000", "0.0000", "7"]
    assert [fmt(v) for v in (None, math.nan, -0.0, 1e300, "x")] == ["", "n/a", "0.0000", "1.0000e+300", "x"]
    assert _mean_sd({0: 0.5}) == "0.5000 (n=1)"  # one seed: no sd or interval (was "0.5000 ± 0.0000 (n=1)")
    assert _mean_sd({0: 0.5, 1: math.nan, 2: math.inf}) == "n/a (n=3, 2 not finite)"  # was "nan ± nan [nan, nan]"


def test_means_over_opposite_infinities_are_nan() -> None:
    from mmcore.report.analysis import by_present

    table = {"a": {"m": math.inf}, "v": {"m": -math.inf}, "a+v": {"m": 0.5}, "average": {"m": 0.1}}
    got = by_present(table, "m")  # raised "ValueError: -inf + inf in fsum" (run report, study report)
    assert math.isnan(got[1]) and got[2] == 0.5


def test_values_near_the_float_maximum_are_numbers_not_tracebacks() -> None:
    from mmcore.omnibus import mean_ci
    from mmcore.report.analysis import paired
    from mmcore.report.stats import compare, mean_or_nan
    from mmcore.sweep.aggregate import Stat, mean_std

    # each raised OverflowError before, ending `mmcore study report`, a sweep report or a sweep's aggregation
    assert mean_or_nan([1.7e308, 1.7e308]) == 1.7e308  # fmean: "intermediate overflow in fsum"
    assert mean_std([1.7e308, -1.7e308]) == Stat(0.0, math.inf, 2)  # stdev of exact fractions
    assert mean_ci([1e200, -1e200])[1:] == (-math.inf, math.inf)  # (v - mean) ** 2
    assert _mean_sd({0: 1e200, 1: -1e200}) == "0.0000 ± inf [-inf, inf] (n=2)"
    a, b = {0: 1.7e308, 1: -1e308}, {0: 0.0, 1: 0.0}  # differences finite, their sd 1.9e308 is not
    assert paired("a − b", a, b).word(True) == "n/a: seeds 0, 1 not finite"
    assert compare("a", a, "b", b).t is None and compare("a", a, "b", b).nonfinite == (0, 1)
    assert paired("a − b", {0: 1e200, 1: 0.5}, {0: 0.0, 1: 0.4}).mean == 5e199  # large but testable: as before


def test_condition_names_that_name_no_modality_order() -> None:
    from mmcore.report.shapley import modalities_of

    # a modality named "+" gave ['a', '', ''] and a Shapley figure with 3 labels for 2 values (ValueError)
    assert modalities_of(["a", "+", "a++"]) is None and modalities_of(["a", "a+a"]) is None
    assert modalities_of(["a", "v", "a+v"]) == ["a", "v"]


def test_eval_json_null_reads_as_nan_and_a_string_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"results": {"test": {"a": {"accuracy": None, "f1": 0.5}}}}))
    assert math.isnan(read_eval(path)["results"]["test"]["a"]["accuracy"])
    path.write_text(json.dumps({"results": {"test": {"a": {"accuracy": "0.5"}}}}))
    with pytest.raises(MMCoreError, match=r"eval.json: results.test.a.accuracy: expected a number, got '0.5'$"):
        read_eval(path)
    path.write_text(json.dumps({"results": {"test": {"average": 0.5}}}))
    with pytest.raises(MMCoreError, match=r"results.test.average: expected \{metric: value\}, got 0.5$"):
        read_eval(path)


def test_figure_files_stay_short_and_inside_their_folder(tmp_path: Path) -> None:
    doc = Document("t")
    for name in ("../../escape", "x" * 3000, "x" * 3000, "/etc/passwd"):
        doc.figure(name, b"png")
    assert list(doc.figures) == ["escape.png", "x" * 100 + ".png", "x" * 100 + "-2.png", "etc-passwd.png"]
    written = doc.write(tmp_path / "out" / "r.html")
    assert all(p.parent == tmp_path / "out" / "r_figures" for p in written[1:]) and len(written) == 5


def test_figures_draw_math_like_names_and_huge_values() -> None:
    pytest.importorskip("matplotlib")
    from mmcore.report import figures

    # each raised before: "$\foo$" a mathtext ParseFatalException, 1.7e308 "arange: cannot compute length"
    pngs = [figures.bars(["a$\\foo$", "b$^$"], [1.0, math.nan], "t $^$", "y $^$"),
            figures.lines({"_a": ([1, 2], [1.0, 1.7e308]), "b": ([1, 2], [math.nan, 1e308])}, "t", "x", "y"),
            figures.heatmap([[1.7e308, 1.0]], ["$^$"], ["c", "d"], "t"),
            figures.curves({"$^$": ([0.0, 1.0], [1.0, 1.7e308], [0.1, 0.1])}, "t", "x", "y")]
    assert all(p.startswith(b"\x89PNG") for p in pngs)
    assert figures._legend("_a") == " _a"  # matplotlib leaves labels starting with '_' out of a legend


def _fake_run(run_dir: Path, seed: int, shift: float) -> None:
    """A finished run as the study reads it: eval.json with odd names, NaN, null, and +inf on one
    seed where the other has -inf (their mean is NaN; statistics.fmean raised ValueError)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text("name: x\ntrain: {batch_size: 8}\n")
    values = {"m0": 0.3 + shift, "m1": math.nan, "m0+m1": 0.5, ODD_CONDITION: math.inf if seed == 0 else -math.inf}
    table: dict[str, dict[str, float | None]] = {c: {"macro_f1": v, ODD_METRIC: None} for c, v in values.items()}
    table["average"] = {"macro_f1": 0.4 + shift, ODD_METRIC: -0.0}
    (run_dir / "eval.json").write_text(json.dumps({"best_epoch": 1, "results": {"test": table}}))


def test_study_outputs_with_hostile_names(tmp_path: Path) -> None:
    from mmcore.study.outputs import write_outputs
    from mmcore.study.run import plan

    study = tmp_path / "study.yaml"
    study.write_text(f"""name: "=HYPERLINK(1)|x`y`<b>"
recipe: {ROOT / 'studies' / 'repro' / 'recipe.yaml'}
seeds: 2
arms:
  "{ARM_A}": {{balancer: mmcore.uniform}}
  "{ARM_B}": {{train.modality_dropout: 0.3}}
axes:
  data: {{"{LEVEL}": {{seed: 1}}}}
analysis:
  primary: test.average.macro_f1
  compare: [["{ARM_A}", "{ARM_B}"]]
""")
    state = plan(study, tmp_path / "out")
    for run in state.main:
        _fake_run(run.run_dir, run.seed, 0.01 * run.seed + (0.02 if run.arm == ARM_B else 0.0))
    write_outputs(state)
    out = tmp_path / "out"

    text = (out / "study.md").read_text(encoding="utf-8")
    for rows in md_tables(text):
        assert {len(r) for r in rows} == {len(rows[0])}, rows
    # seeds 0.40, 0.41: sd 0.00707, t(0.975, 1) = 12.7062, half-width 12.7062 · 0.00707 / √2 = 0.0635
    assert "| =cmd\\|x | 0.4050 ± 0.0071 [0.3415, 0.4685] (n=2) |" in text
    assert "| -rnd\\|\\`q\\` = | n/a | n/a |" in text and "| m1 | n/a | n/a |" in text
    assert "<i>" not in rendered_cells(text)[0] and "<i>&amp;$^$" in rendered_cells(text)

    with open(out / "results.csv", newline="", encoding="utf-8") as fh:  # every name back as it was written
        rows = list(csv.reader(fh))
    assert rows[0] == ["study", "arm", "data", "seed", "split", "condition", "metric", "value"]
    assert {(r[1], r[2]) for r in rows[1:]} == {(ARM_A, LEVEL), (ARM_B, LEVEL)}
    assert {r[5] for r in rows[1:]} == {"m0", "m1", "m0+m1", ODD_CONDITION, "average"}
    assert {r[7] for r in rows[1:] if r[6] == ODD_METRIC} == {"nan", "-0.0"}  # null read as NaN; the data as written
    assert rows[1][0] == "=HYPERLINK(1)|x`y`<b>"  # kept as written: the file round-trips (see docs/reliability.md)

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<i>&amp;" not in page and "&lt;i&gt;&amp;amp;$^$" in page and "<script" not in page
    assert all(p.parent == out / "report_figures" for p in (out / "report_figures").iterdir())


def test_sweep_report_with_one_configuration_and_one_seed_says_so(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from test_report import fake_sweep

    from mmcore.report import build_report

    sweep = fake_sweep(tmp_path, n_seeds=2)
    info = json.loads((sweep / "sweep.json").read_text())
    info["points"] = info["points"][:1]
    info["points"][0]["values"] = {"balancer": "<script>x</script>"}
    info["points"][0]["runs"] = {"0": info["points"][0]["runs"]["0"]}
    (sweep / "sweep.json").write_text(json.dumps(info))
    with open(sweep / "results.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    with open(sweep / "results.csv", "w", newline="") as fh:  # as aggregate writes one seed: std 0.0, n 1
        csv.writer(fh).writerows([rows[0], *([*r[:6], "0.0", "1"] for r in rows[1:] if r[0] == rows[1][0])])
    page = build_report(sweep, tmp_path / "s.html")[0].read_text(encoding="utf-8")
    assert "1 configuration. Split: test." in page
    assert "One configuration: no paired tests or win / tie / loss counts (they compare two or more)." in page
    assert 'id="paired"' not in page and 'id="win-tie-loss"' not in page  # was an empty table of pairs
    assert "<script" not in page
    cells = Cells()
    cells.feed(page)
    start = cells.cells.index("balancer=<script>x</script>")  # accuracy mean, std, macro_f1 mean, std, n
    # means over fake_sweep's 2 seeds (shift 0, 0.01): accuracy (0.6 + 0.4 + 0.9)/3 + 0.005, macro-F1 (0.55 + 0.35 + 0.88)/3 + 0.005
    assert cells.cells[start + 1:start + 6] == ["0.6383", "n/a", "0.5983", "n/a", "1"]  # std was "0.0000"


def test_run_report_with_hostile_names_and_null_values(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from test_report import fake_run

    from mmcore.report import build_report

    run = fake_run(tmp_path)
    evaluation = json.loads((run / "eval.json").read_text())
    for table in evaluation["results"].values():
        for condition, row in table.items():
            row[ODD_METRIC] = None if condition == "v" else {"a": 1.7e308, "a+v": -0.0}.get(condition, math.nan)
    (run / "eval.json").write_text(json.dumps(evaluation))
    # sorting the conditions by this metric raised TypeError on the null
    page = build_report(run, tmp_path / "r.html", metric=ODD_METRIC)[0].read_text(encoding="utf-8")
    assert "<script" not in page
    assert "Test +m|`x`&lt;script&gt;, average over 3 conditions: n/a." in page
    cells = Cells()
    cells.feed(page)
    assert "1.7000e+308" in cells.cells and "-0.0000" not in cells.cells and "None" not in cells.cells


def _printed(table: object) -> str:
    from rich.console import Console

    console = Console(width=400, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text()


def test_screen_tables_print_names_as_written_not_as_rich_markup() -> None:
    """Rich reads ``[...]`` in a string as markup: a closing tag no tag opened raised MarkupError
    (a traceback after a finished sweep), and ``[bold]`` vanished from the name it was part of."""
    from mmcore.engine.progress import results_table as condition_table
    from mmcore.sweep.aggregate import Row, Stat, results_table
    from mmcore.sweep.grid import Point

    point = Point((("balancer", "x[/x]"), ("tag", "[bold]y")), "p0")
    rows = [Row(point, "test", "average", "acc[/]", Stat(0.5, 0.25, 2))]
    printed = _printed(results_table(rows, [point], ["balancer", "tag"], ["acc[/]"]))
    assert "x[/x]" in printed and "[bold]y" in printed and "acc[/]" in printed
    assert "0.5000 ± 0.2500" in printed
    printed = _printed(condition_table("test [/z]", {"[red]a": {"f1[/]": 0.25}, "average": {"f1[/]": 0.25}}))
    assert "test [/z]" in printed and "[red]a" in printed and "f1[/]" in printed and "0.2500" in printed


def test_model_card_tables_keep_their_columns_and_say_n_a() -> None:
    """MODEL_CARD.md's tables: a ``|`` or newline in a condition or metric name added a column or
    split the row, NaN printed as ``nan`` and a ``null`` metric raised TypeError."""
    from mmcore.after.card import _metrics_section

    results = {"a": {"f|1": 0.5, "acc\nx": math.nan}, "b": {"f|1": None, "acc\nx": 0.25},
               "a+b": {"f|1": 0.75, "acc\nx": 1.0}, "a|<b>": {"f|1": 0.125, "acc\nx": 0.5}, "average": {"f|1": 0.5, "acc\nx": 0.5}}
    lines = _metrics_section(results)
    assert [[len(row) for row in table] for table in md_tables("\n".join(lines))] == [[4] * 7, [4] * 4]
    assert "| condition | present | f\\|1 | acc x |" in lines
    assert "| a | 1 | 0.5000 | n/a |" in lines and "| b | 1 | n/a | 0.2500 |" in lines
    assert "| a\\|\\<b> | — | 0.1250 | 0.5000 |" in lines
    assert "| 1 | 2 | n/a | n/a |" in lines and "| 2 | 1 | 0.7500 | 1.0000 |" in lines  # a mean over a None or a NaN is n/a


def test_sweep_curves_with_a_null_draw_are_drawn_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    """A seed whose curve has a null (a diverged draw's NaN, as JSON writes it) made the sweep
    report's mean over seeds a TypeError; it reads as NaN, as eval.json's null does."""
    pytest.importorskip("matplotlib")
    from test_report import fake_sweep

    from mmcore.report import build_report, figures

    sweep = fake_sweep(tmp_path, n_seeds=2)
    for seed, values in (("0", [0.9, None]), ("1", [0.8, 0.6])):
        info = json.loads((sweep / "sweep.json").read_text())
        folder = sweep / info["points"][0]["runs"][seed] / "evals" / "curve"
        folder.mkdir(parents=True)
        curve = {"uniform": {"rates": [0.0, 0.5], "mean": {"macro_f1": values}, "std": {"macro_f1": [0.0, 0.0]}}}
        (folder / "curve.json").write_text(json.dumps({"split": "test", "metrics": ["macro_f1"], "curves": curve}))
    drawn = {}
    real = figures.curves
    monkeypatch.setattr(figures, "curves", lambda series, *a: drawn.update(series) or real(series, *a))
    build_report(sweep, tmp_path / "s.html", metric="macro_f1")
    ((rates, mean, std),) = drawn.values()
    assert rates == [0.0, 0.5] and mean[0] == pytest.approx(0.85) and math.isnan(mean[1])
