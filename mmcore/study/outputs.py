"""A study's outputs: ``study.md``, ``tables.tex`` (booktabs), ``results.csv`` (tidy), ``report.html``,
``mechanism.csv`` (per-modality training signals over steps, :mod:`mmcore.study.mechanism`).

The tables are built once as :class:`Table` values and rendered three ways, so the markdown,
LaTeX and HTML always show the same numbers. ``results.csv`` has one row per run × split ×
condition × metric with the arm, axis levels, seed and chosen values.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.engine.record import RunRecord
from mmcore.omnibus import mean_ci
from mmcore.report.analysis import Effect, endpoint_higher_is_better, holm_scope, small_n_note, split_endpoint
from mmcore.report.html import number
from mmcore.study import extras, mechanism
from mmcore.study.freeze import read_prereg
from mmcore.study.plan import level_slug
from mmcore.study.results import StudyNumbers, compute, endpoints
from mmcore.study.spec import StudyError
from mmcore.sweep.aggregate import pid_alive
from mmcore.text import LINE_BREAK, markdown_cell

DIGITS = 4
OUTPUTS = ("study.md", "tables.tex", "results.csv", "report.html", "mechanism.csv")
STAGE = ".outputs.tmp-"  # + pid: the folder the outputs are written in before they are moved in


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)


def fmt(value: Any) -> str:
    """A cell as every output shows it: floats as the HTML report does (``mmcore.report.html.number``)."""
    if isinstance(value, float):
        return number(value, DIGITS)
    return "" if value is None else str(value)


def _mean_sd(values: dict[int, float]) -> str:
    xs = list(values.values())
    if not xs:
        return "n/a"
    if (note := extras.not_finite(xs)) is not None:  # a diverged seed: no mean, sd or interval to show
        return note
    mean, low, high = mean_ci(xs)
    if low is None or high is None:  # one seed: no sd or interval, and "± 0.0000" would claim one
        return f"{fmt(mean)} (n=1)"
    sd = math.sqrt(sum((x - mean) * (x - mean) for x in xs) / (len(xs) - 1))  # inf, not OverflowError, past 1e154
    return f"{fmt(mean)} ± {fmt(sd)} [{fmt(low)}, {fmt(high)}] (n={len(xs)})"


def _effect_row(where: str, e: Effect, higher: bool) -> list[Any]:
    word = e.word(higher)  # "n too small" below MIN_SEEDS paired seeds
    return [e.label, where, e.n, e.mean, f"[{fmt(e.ci[0])}, {fmt(e.ci[1])}]", e.d_z, e.t_p, e.wilcoxon_p,
            e.p_holm, e.mde, word]


def _small_n(rows: list[tuple[str, Effect]]) -> list[str]:
    """The "n too small" note as a list of at most one line: only when a row is below the rule."""
    note = small_n_note([e.n for _, e in rows])
    return [note] if note else []


EFFECT_HEADER = ["comparison", "cell", "n", "mean diff", "95% CI", "d_z", "t p", "Wilcoxon p", "Holm p",
                 "MDE (80%)", "verdict"]
# Under every table of verdicts: a 95% CI that excludes 0 beside "tie" reads as a contradiction
# unless the reader knows the word comes from the Holm p and the interval from the single test.
VERDICT_NOTE = ("verdict: win or loss when the Holm p is below 0.05 (paired t-test), else tie; a tie is not "
                "evidence of equal methods (a difference below the MDE would go unseen), and the 95% CI is "
                "per comparison, not Holm-adjusted.")


def scope_note(study: Any) -> str:
    """What the verdicts stand on and what they leave open, under the primary's means: a reader
    who takes one table out of the report should not take "win" beyond these settings."""
    unit, count = next(((u, study.budget[k]) for k, u in (("steps", "optimiser step"), ("epochs", "epoch"))
                        if k in study.budget), ("", 0))
    budget = f"{count} {unit}{'s' if count != 1 else ''}" if unit else "the recipe's epochs"
    tuning = "settings tuned on validation (the tuning table)" if study.tune is not None else "no tuning"
    return (f"Scope: {len(study.seeds)} seeds per cell, {budget}, recipe {study.recipe.name}, {tuning}. Not shown: "
            "other data, budgets or settings, cells not run, and equal methods behind a tie.")


def tables(numbers: StudyNumbers, tune: dict[str, Any] | None) -> list[Table]:
    study = numbers.study

    def higher(endpoint: str) -> bool:  # the primary's declared direction, a secondary metric's own
        return endpoint_higher_is_better(endpoint, study.analysis.primary, study.analysis.higher_is_better)

    slugs = list(dict.fromkeys(level_slug(lv) for _, lv in numbers.cells))
    out = []
    for endpoint in endpoints(study):
        kind = "primary" if endpoint == study.analysis.primary else "secondary"
        vals = numbers.values[endpoint]
        out.append(Table(f"{endpoint} ({kind}): mean ± sd [95% t interval] over seeds", ["arm", *slugs],
                         [[arm, *(_mean_sd(vals.get((arm, s), {})) if (arm, s) in vals else "—" for s in slugs)]
                          for arm in study.arms], [scope_note(study)] if kind == "primary" else []))
        for name, family in numbers.effects[endpoint].items():
            if family:
                title = f"{endpoint} ({kind}): paired differences over seeds" + (f", family {name}" if name else "")
                out.append(Table(title, EFFECT_HEADER, [_effect_row(slug, e, higher(endpoint)) for slug, e in family],
                                 [holm_scope([e for _, e in family], "declared comparisons") + ".",
                                  VERDICT_NOTE, *_small_n(family)]))
    for endpoint, declared in numbers.interactions.items():
        kind = "primary" if endpoint == study.analysis.primary else "secondary"
        for one, found in declared:
            if found:
                out.append(Table(f"interaction on {endpoint} ({kind}), {one.axis}: {one.level1} vs {one.level2}", EFFECT_HEADER,
                                 [_effect_row(slug, e, higher(endpoint)) for slug, e in found],
                                 ["per seed: difference of the two arms' differences at the two levels; "
                                  + holm_scope([e for _, e in found], "interaction tests") + ", a family of its own.",
                                  VERDICT_NOTE, *_small_n(found)]))
    out += condition_tables(numbers)
    ks = sorted({k for per in numbers.present.values() for k in per})
    if ks:
        out.append(Table(f"{study.analysis.primary}: mean over conditions with k modalities present", ["arm", "cell", *(f"{k}-view" for k in ks)],
                         [[arm, slug, *(per.get(k, math.nan) for k in ks)] for (arm, slug), per in numbers.present.items()]))
    out += _descriptive(numbers, slugs)
    if numbers.cost:
        out.append(Table("cost per arm (its first finished run)", ["arm", "steps", "parameters", "s/step"],
                         [[arm, c["steps"], c["parameters"], c["seconds_per_step"]] for arm, c in numbers.cost.items()]))
    if tune:
        rows = [[arm, json.dumps(t["values"]), t["mean"] if t["mean"] is not None else math.nan,
                 "chosen" if t["values"] == info["chosen"] else ""]
                for arm, info in tune.items() for t in info["trials"]]
        out.append(Table(f"tuning ({study.tune.select if study.tune else ''}, validation only)", ["arm", "values", "mean score", ""], rows))
    return out


def _descriptive(numbers: StudyNumbers, slugs: list[str]) -> list[Table]:
    """Friedman across arms, MissBench's MEI and MLI, and the random-rate test conditions
    (``mmcore.study.extras``): outside the pre-registered family, for reading, not deciding."""
    study, primary, out = numbers.study, numbers.study.analysis.primary, []
    tests = extras.friedman_by_cell(numbers.values[primary], list(study.arms), slugs)
    if tests:
        out.append(Table(f"{primary}: Friedman test across arms", ["cell", "arms", "seeds", "χ²", "df", "p"],
                         [[slug, t.arms, t.blocks, t.statistic, t.arms - 1, t.p] for slug, t in tests],
                         ["Whether any arm differs (seeds as blocks); not in the Holm family."]))
    diag = extras.missbench(numbers.finished, split_endpoint(primary)[2])
    if diag:
        out.append(Table("MissBench diagnostics: mean [95% t interval] over seeds", ["arm", "cell", "MEI", "MLI"],
                         [[arm, slug, extras.mean_with_ci(d.get("MEI", {}), DIGITS), extras.mean_with_ci(d.get("MLI", {}), DIGITS)]
                          for (arm, slug), d in diag.items()],
                         [f"MEI of {split_endpoint(primary)[2]} over the test subset conditions, MLI of the encoders' "
                          "gradient norms (mmcore/missbench.py: 1 = equal shares)."]))
    names, grid = extras.rate_grid(numbers.finished, primary)
    if names:
        split, _, metric = split_endpoint(primary)
        out.append(Table(f"{split} {metric} under random-rate conditions: mean [95% t interval] over seeds",
                         ["arm", "cell", *names],
                         [[arm, slug, *(extras.mean_with_ci(per.get(n, {}), DIGITS) for n in names)] for (arm, slug), per in grid.items()],
                         ["Columns: the recipe's random-mask evaluation conditions; rows: arm and training cell "
                          "(with training rates as an axis, the train × test grid)."]))
    return out


def condition_tables(numbers: StudyNumbers) -> list[Table]:
    """Per cell: every condition (rows) × arm (columns), the mean over seeds of the primary's split
    and metric; a ``Bayes ceiling`` column where the data has one (the best any arm can reach)."""
    split, _, metric = numbers.study.analysis.primary.split(".")
    out = []
    for slug in dict.fromkeys(level_slug(lv) for _, lv in numbers.cells):
        arms = [arm for arm in numbers.study.arms if (arm, slug) in numbers.conditions]
        conditions = list(dict.fromkeys(c for arm in arms for c in numbers.conditions[(arm, slug)]))
        ceiling = numbers.ceilings.get(slug)
        extra = ["Bayes ceiling"] if ceiling else []
        if arms:
            out.append(Table(f"{split} {metric} per condition at {slug} (mean over seeds)", ["condition", *arms, *extra],
                             [[c, *(numbers.conditions[(arm, slug)].get(c, math.nan) for arm in arms),
                               *([ceiling.get(c, math.nan)] if ceiling else [])] for c in conditions]))
    return out


def weight_table(series: dict[Any, Any]) -> list[Table]:
    """The balancer's weights (``beta``/``weight`` of :mod:`mmcore.study.mechanism`) at the last step
    every seed logged, mean over seeds: what the curves in report.html end at."""
    last: dict[tuple[str, str, str], dict[str, float]] = {}
    for (arm, cell, key), (_, means, _) in series.items():
        signal, _, modality = key.rpartition(".")
        if signal in ("beta", "weight") and means:
            last.setdefault((arm, cell, signal), {})[modality] = means[-1]
    names = list(dict.fromkeys(m for per in last.values() for m in per))
    if not last:
        return []
    return [Table("balancer weights at the end of training (mean over seeds)", ["arm", "cell", "weight", *names],
                  [[arm, cell, signal, *(per.get(m, math.nan) for m in names)] for (arm, cell, signal), per in last.items()],
                  ["report.html draws them over training; mechanism.csv has every logged step."])]


def changes(prereg: dict[str, Any]) -> list[str]:
    """The study file's recorded changes outside the analysis (``mmcore.study.freeze``), as lines."""
    return [f"Study file changed at {c.get('at')} with {c.get('finished_runs')} finished runs: "
            f"{', '.join(map(str, c.get('parts', [])))} (the analysis as frozen)"
            for c in prereg.get("changes", []) if isinstance(c, dict)]


def unfinished_note(state: Any) -> list[str]:
    """A line naming the study's runs that have not finished, when some have not: a table read
    without it would pass for the whole study (its n is the only other trace)."""
    missing = [r.rel for r in state.main if not RunRecord(r.run_dir).finished]
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"Not finished: {len(missing)} of {len(state.main)} runs ({shown}); they are missing from every table."]


def _md(value: Any) -> str:
    """A cell, heading or note as markdown text (``mmcore.text.markdown_cell``)."""
    return markdown_cell(fmt(value))


def markdown(name: str, prereg: dict[str, Any] | None, parts: list[Table], notes: list[str] | None = None) -> str:
    """The study as markdown; ``notes`` are lines under the title (the runs not finished)."""
    lines = [f"# Study {_md(name)}", "", *(f"**{_md(n)}**" for n in notes or []), *([""] if notes else [])]
    if prereg:
        lines += [f"Analysis pre-registered at {_md(prereg.get('frozen_at'))} "
                  f"(study file sha256 {_md(prereg.get('file_sha256', '')[:12])}).", ""]
        for a in prereg.get("amendments", []):
            lines.append(f"- Amendment at {_md(a['at'])} with {_md(a['finished_runs'])} finished runs: {_md(a['reason'])}")
        lines += [f"- {_md(line)}" for line in changes(prereg)]
        lines.append("")
    for t in parts:
        lines += [f"## {_md(t.title)}", "", "| " + " | ".join(_md(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
        lines += ["", *(_md(n) for n in t.notes), ""] if t.notes else [""]
    return "\n".join(lines)


TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
       "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
       "|": r"\textbar{}", "±": r"$\pm$", "−": "-", "\n": " ", "\r": " "}  # one pass: a replacement is never escaped again


def _tex(text: Any) -> str:
    """A cell as LaTeX text: an arm named ``a$^$`` or a condition with ``{`` would otherwise not compile."""
    return "".join(TEX.get(c, c) for c in fmt(text))


def _comment(text: str) -> str:
    """A LaTeX comment line: a newline in it would end the comment and run the rest as LaTeX."""
    return "% " + LINE_BREAK.sub(" ", text)


def latex(parts: list[Table], notes: list[str] | None = None) -> str:
    out = ["% booktabs tables written by mmcore study report; \\usepackage{booktabs}", *(_comment(n) for n in notes or [])]
    for t in parts:
        out += [_comment(t.title), "\\begin{tabular}{" + "l" * len(t.header) + "}", "\\toprule",
                " & ".join(_tex(h) for h in t.header) + " \\\\", "\\midrule"]
        out += [" & ".join(_tex(c) for c in row) + " \\\\" for row in t.rows]
        out += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(out)


def write_csv(path: Path, state: Any) -> None:
    """Tidy: one row per run × split × condition × metric."""
    study = state.study
    axes, keys = list(study.axes), sorted({k for r in state.main for k in r.values})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["study", "arm", *axes, "seed", *keys, "split", "condition", "metric", "value"])
        for run in state.main:
            record = RunRecord(run.run_dir)
            for split, table in record.results.items():
                for condition, metrics in table.items():
                    for metric, value in metrics.items():
                        writer.writerow([study.name, run.arm, *(run.levels[a] for a in axes), run.seed,
                                         *(json.dumps(run.values.get(k)) for k in keys), split, condition, metric, repr(value)])


def _html(path: Path, name: str, prereg: dict[str, Any] | None, parts: list[Table], series: dict[Any, Any],
          notes: list[str]) -> None:
    """The tables, a heatmap beside each per-condition table and the mechanism curves when
    matplotlib (extra ``report``) is there."""
    from mmcore.errors import MMCoreError
    from mmcore.report.html import Document

    doc = Document(f"Study {name}")
    for note in notes:
        doc.text(note)
    if prereg:
        doc.text(f"Analysis pre-registered at {prereg.get('frozen_at')}; {len(prereg.get('amendments', []))} amendment(s).")
        for a in prereg.get("amendments", []):
            doc.text(f"Amendment at {a['at']} with {a['finished_runs']} finished runs: {a['reason']}", note=True)
        for line in changes(prereg):
            doc.text(line, note=True)
    for t in parts:
        doc.heading(t.title)
        doc.table(t.header, [[c if isinstance(c, (int, float)) else fmt(c) for c in row] for row in t.rows])
        for n in t.notes:
            doc.text(n, note=True)
        if " per condition at " in t.title and t.rows:
            _heatmap(doc, t)
    if series:
        doc.heading("mechanism: per-modality signals over training (mean over seeds; mechanism.csv)")
        try:
            for title, png in mechanism.figures(series):
                doc.figure(title, png, title)
        except MMCoreError:  # no matplotlib: mechanism.csv holds the numbers
            doc.text("figures need matplotlib (pip install 'mmcore[report]'); the numbers are in mechanism.csv", note=True)
    doc.write(path)


def _heatmap(doc: Any, t: Table) -> None:
    from mmcore.errors import MMCoreError
    from mmcore.report import figures

    try:
        png = figures.heatmap([[float(v) for v in row[1:]] for row in t.rows], [str(row[0]) for row in t.rows], t.header[1:], t.title)
    except MMCoreError:  # no matplotlib: the table alone
        return
    doc.figure(t.title, png, t.title)


def reportable(state: Any) -> str:
    """How many of the study's runs finished, as a line to print; refused (one line, exit 2) when
    the study directory does not exist or no run finished, so that earlier outputs are never
    overwritten by empty tables."""
    path, d, total = state.study.path, state.study_dir, len(state.main)
    if not d.is_dir():
        raise StudyError(f"{path}: no runs exist yet ({d} is not a study directory); run 'mmcore study run {path}' first")
    done = sum(RunRecord(r.run_dir).finished for r in state.main)
    if done == 0:
        raise StudyError(f"{path}: 0 of {total} runs finished in {d}; nothing to report (earlier outputs are kept); "
                         f"run 'mmcore study run {path}' first")
    missing = f"; {total - done} not finished, their cells are missing from the tables" if done < total else ""
    return f"report from {done} of {total} runs finished{missing}"


def write_outputs(state: Any) -> list[Path]:
    """study.md, tables.tex, results.csv and report.html in the study directory; returns them.
    Refused when no run finished (:func:`reportable`).

    Each is written in full in a folder of this process's own, then moved in: a kill or a stop
    while they are written leaves the previous outputs (or none), never a table cut short that
    a reader would trust, and two invocations writing at once never mix their lines."""
    reportable(state)
    d = state.study_dir
    tune_file = d / "tune.json"
    tune = json.loads(tune_file.read_text(encoding="utf-8")) if tune_file.is_file() else None
    prereg = read_prereg(d)
    series = mechanism.mechanism_series(state.main)
    parts = tables(compute(state.study, state.main), tune) + weight_table(series)
    notes = unfinished_note(state)
    stage = _stage(d)
    try:
        (stage / OUTPUTS[0]).write_text(markdown(state.study.name, prereg, parts, notes), encoding="utf-8")
        (stage / OUTPUTS[1]).write_text(latex(parts, notes), encoding="utf-8")
        write_csv(stage / OUTPUTS[2], state)
        _html(stage / OUTPUTS[3], state.study.name, prereg, parts, series, notes)
        mechanism.write_mechanism_csv(stage / OUTPUTS[4], series)
        _move_in(stage, d)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [d / name for name in OUTPUTS]


def _stage(d: Path) -> Path:
    """This process's empty folder for the outputs; those that killed invocations left are removed."""
    for old in d.glob(f"{STAGE}*"):
        pid = old.name[len(STAGE):]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    stage = d / f"{STAGE}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return stage


def _move_in(stage: Path, d: Path) -> None:
    """The figures, then the outputs, each file replacing its old self whole (a rename)."""
    for folder in (p for p in stage.iterdir() if p.is_dir()):
        (d / folder.name).mkdir(exist_ok=True)
        for file in folder.iterdir():
            os.replace(file, d / folder.name / file.name)
    for name in OUTPUTS:
        os.replace(stage / name, d / name)
