"""Evaluation items/s of ``predict`` on the IEMOCAP recipe: length-ordered encoding against whole batches.

``predict`` (``mmcore.engine.evaluate``) encodes each sequence modality in length order, in calls
of at most ``FRAMES_PER_CALL`` padded frames (``MultimodalModel.encode_by_length``). This times it
on the val and test splits under the recipe's 7 conditions (items = samples x conditions), the
budgets given with ``--frames`` interleaved with ``whole`` (``MultimodalModel.encode`` on the whole
evaluation batch, as before), order reversed on odd repeats, freshly initialised weights. It also
prints the largest difference of any prediction from ``whole``'s (the same function: float
rounding only). ``--sdpa`` adds a variant at the first budget with attention through SDPA's fused
kernel, as a CPU evaluated before 5ec80af (now ``written_out_attention``). Not a test: nothing is
asserted.

    python benchmarks/bench_eval.py --root DATA
    python benchmarks/bench_eval.py --root DATA --sdpa --repeats 7
    python benchmarks/bench_eval.py --root DATA --frames 1024 2048 4096 --repeats 5 --profile
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch.nn.functional as F

    import mmcore.builtins.encoders as encoders
    from mmcore.engine import evaluate
    from mmcore.engine.model import MultimodalModel
    from mmcore.engine.runtime import Runtime
    from mmcore.engine.session import build_session
    from mmcore.recipe import load_recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="make_iemocap.py's files (read by corpora.iemocap, fold 1)")
    ap.add_argument("--recipe", type=Path, default=HERE.parent / "recipes" / "redcore_iemocap.yaml")
    ap.add_argument("--frames", type=int, nargs="+", default=[evaluate.FRAMES_PER_CALL])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sdpa", action="store_true", help="add the first budget with SDPA's fused attention (the old CPU path)")
    ap.add_argument("--profile", action="store_true", help="then profile one pass at the first budget")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bench_eval: {vars(args)}", flush=True)
    recipe = load_recipe(args.recipe, ["device=cpu", f"dataset={{type: corpora.iemocap, root: {args.root}, fold: 1}}"])
    runtime = Runtime.create("cpu", recipe["precision"])
    session = build_session(recipe, runtime)
    model, batch_size = session.model.eval(), int(recipe["train"]["eval_batch_size"])
    by_length, written = MultimodalModel.encode_by_length, encoders.written_out_attention

    def fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor, p: float = 0.0) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])

    def once(variant: Any) -> tuple[float, dict[str, dict[str, torch.Tensor]]]:
        encoders.written_out_attention = fused if variant == "sdpa" else written
        if variant == "whole":
            MultimodalModel.encode_by_length = lambda self, batch, frames: self.encode(batch)  # type: ignore[method-assign]
        else:
            MultimodalModel.encode_by_length = by_length  # type: ignore[method-assign]
            evaluate.FRAMES_PER_CALL = args.frames[0] if variant == "sdpa" else variant
        began, items, outputs = time.perf_counter(), 0, {}
        for split in ("val", "test"):
            outputs[split] = evaluate.predict(model, session.splits[split], session.eval_masks[split], batch_size, runtime.autocast)
            items += len(session.splits[split]) * len(outputs[split])
        return items / (time.perf_counter() - began), outputs

    variants: list[Any] = ["whole", *args.frames, *(["sdpa"] if args.sdpa else [])]
    reference = once("whole")[1]  # also the warm-up
    rates: dict[Any, list[float]] = {v: [] for v in variants}
    differences: dict[Any, float] = {}
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            rate, outputs = once(variant)
            rates[variant].append(rate)
            differences[variant] = max((outputs[s][c] - reference[s][c]).abs().max().item() for s in outputs for c in outputs[s])
    print(f"\n{'encoding':18}{'items/s, median (min-max)':>30}{'x whole, median':>18}{'max |diff|':>14}")
    for variant in variants:
        ratio = statistics.median(r / w for r, w in zip(rates[variant], rates["whole"]))
        name = {"whole": "whole batch", "sdpa": f"{args.frames[0]}, SDPA"}.get(variant, f"by length, {variant}")
        print(f"{name:18}{statistics.median(rates[variant]):>12.0f} ({min(rates[variant]):.0f}-{max(rates[variant]):.0f})"
              f"{ratio:>18.2f}{differences[variant]:>14.1e}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            once(args.frames[0])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
