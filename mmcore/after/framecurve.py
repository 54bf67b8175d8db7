"""``mmcore eval RUN --curve --over frames``: the metric against the rate of frames dropped.

For each frame rate r and each of ``draws`` seeds, the split's frames are dropped as
``missing.frames`` drops them at evaluation (segments of the recipe's ``missing.frames.segment``,
from the clean split, seed = the draw), every modality present otherwise; a row whose frames
are all gone counts as lacking that modality. The points are summarised like the missing-rate
curve (``summarize_curve``: mean ± std over draws, area under the curve, relative robustness),
under the curve name ``frames``. Only datasets with sequence modalities have frames to drop.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mmcore.conditions import parse_conditions
from mmcore.errors import MMCoreError
from mmcore.frames import drop_frames

FRAMES = "frames"


def check_frame_curve(run: Any, rates: list[float]) -> None:
    """The frame curve's one-line refusals, said before anything is evaluated."""
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates) or len(rates) < 2:
        raise MMCoreError(f"--rates: a frame curve needs at least two frame rates in [0, 1], got {rates}")
    if not any(spec.sequence for spec in run.session.specs):
        raise MMCoreError("--over frames: no modality of this dataset is a sequence; there are no frames to drop")


def frame_curve_points(run: Any, split: str, rates: list[float], draws: int) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The curve plan (``curve_conditions``' layout) and the metrics of every point and draw;
    ``check_frame_curve`` has passed (the caller runs it before any evaluation)."""
    from mmcore.after.evaluation import _rate_name
    from mmcore.engine.evaluate import condition_mask_table, evaluate

    s = run.session
    base = s.plan.missing.frames
    full = parse_conditions("full", s.names)
    batch = s.plan.train.eval_batch_size
    clean = s.clean_split(split)

    def score(data: Any) -> dict[str, float]:
        masks = condition_mask_table(full, data, len(s.names))
        table = evaluate(s.model, data, masks, s.task, batch, s.runtime.autocast, s.runtime)
        return dict(table[full[0].name])

    results = {full[0].name: score(clean)}
    for rate in rates:
        for seed in range(draws):
            spec = replace(base, rate=0.0, eval_rate=rate, seed=seed)
            results[_rate_name(FRAMES, rate, seed)] = score(drop_frames(clean, s.specs, spec, s.plan.seed, False))
    return {"conditions": full, "rates": {FRAMES: list(rates)}, "full": full[0].name}, results
