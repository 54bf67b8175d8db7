"""``tune.optuna: {trials: N, seed: S}``: Optuna's TPE sampler instead of the grid (extra ``tune``).

Per tuned arm, one in-memory Optuna study with a seeded ``TPESampler`` (the tree-structured
Parzen estimator of Bergstra et al., NeurIPS 2011; Optuna's default sampler, its defaults kept).
Trial k of every arm runs together: each arm asks for values, the runs over the tuning seeds
(``tune/<arm>/t<k>/seed<s>``) run as one phase, and each arm is told its mean validation score
(``tune.select``; the test split is never read). A space entry is a list (categorical: the
sampler picks an index, so any YAML node can be a choice) or ``{low, high, log}`` (float, or int
when both ends are integers).

Restarts: each trial's values are written to ``tune/<arm>/t<k>/values.json`` before its runs
start. A restarted study asks the sampler again in the same order; with the same seed and the same
told scores it suggests the same values, which are checked against the record, and finished runs
are skipped as everywhere in a study. A mismatch (another Optuna version) is one line, not a
silent retune.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

from mmcore.errors import MMCoreError
from mmcore.study.plan import StudyRun, resolve, tuned_arms
from mmcore.study.spec import Study
from mmcore.sweep.aggregate import written_aside

INSTALL_HINT = "tune.optuna needs optuna, the optional extra 'tune': pip install 'mmcore[tune]'"
RECORD = "values.json"


def optuna_module() -> Any:
    """optuna with its log quietened, or a one-line error naming the extra."""
    try:
        import optuna
    except ImportError:
        raise MMCoreError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(optuna: Any, space: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            out[key] = optuna.distributions.CategoricalDistribution(list(range(len(spec))))
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            out[key] = optuna.distributions.IntDistribution(spec["low"], spec["high"])
        else:
            out[key] = optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return out


def values_of(space: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Recipe values from a trial's parameters (a categorical parameter is the index of its choice)."""
    return {key: spec[params[key]] if isinstance(spec, list) else params[key] for key, spec in space.items()}


def trial_runs(study: Study, study_dir: Any, arm: str, k: int, values: dict[str, Any]) -> list[StudyRun]:
    assert study.tune is not None
    return [StudyRun("tune", arm, dict(study.tune.at), seed, values, f"tune/{arm}/t{k}/seed{seed}", study_dir)
            for seed in study.tune.seeds]


def recorded_runs(study: Study, study_dir: Any) -> list[StudyRun]:
    """The runs of every trial already recorded on disk (for status, reports and the choice)."""
    runs = []
    for arm in tuned_arms(study):
        k = 0
        while (study_dir / "tune" / arm / f"t{k}" / RECORD).is_file():
            record = json.loads((study_dir / "tune" / arm / f"t{k}" / RECORD).read_text(encoding="utf-8"))
            runs += trial_runs(study, study_dir, arm, k, record["values"])
            k += 1
    return runs


def _ask(study: Study, study_dir: Any, arm: str, k: int, book: Any, dists: dict[str, Any]) -> tuple[Any, list[StudyRun]]:
    assert study.tune is not None
    trial = book.ask(dists)
    values = values_of(study.tune.space, trial.params)
    path = study_dir / "tune" / arm / f"t{k}" / RECORD
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded["params"] != trial.params:
            raise MMCoreError(f"{path}: the TPE sampler now suggests {trial.params}, the record says {recorded['params']} "
                              "(another optuna version?); expected the same; move tune/ away to tune again")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_aside(path) as aside:  # whole or absent: a restart reads it back
            aside.write_text(json.dumps({"params": trial.params, "values": values}), encoding="utf-8")
    return trial, trial_runs(study, study_dir, arm, k, values)


def run_trials(study: Study, study_dir: Any, registry: Any, run: Callable[[list[StudyRun]], list[Any]],
               score: Callable[[StudyRun], float | None]) -> tuple[list[StudyRun], list[Any]]:
    """Every trial of every tuned arm; ``run`` runs a phase, ``score`` reads a finished run's score."""
    assert study.tune is not None and study.tune.trials is not None
    optuna = optuna_module()
    dists = distributions(optuna, study.tune.space)
    direction = "maximize" if study.analysis.higher_is_better else "minimize"
    books = {arm: optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=study.tune.sampler_seed))
             for arm in tuned_arms(study)}
    runs: list[StudyRun] = []
    outcomes: list[Any] = []
    for k in range(study.tune.trials):
        asked = {arm: _ask(study, study_dir, arm, k, book, dists) for arm, book in books.items()}
        batch = [r for _, rs in asked.values() for r in rs]
        resolve(study, batch, registry)
        outcomes += run(batch)
        runs += batch
        for arm, (trial, rs) in asked.items():
            scores = [score(r) for r in rs]
            if any(s is None for s in scores):
                books[arm].tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                books[arm].tell(trial, statistics.fmean(scores))  # type: ignore[arg-type]
    return runs, outcomes
