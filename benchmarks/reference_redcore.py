"""Time the RedCore reference code on IEMOCAP-shaped files, for a same-box, same-hour comparison.

Why: issue 25's "x reference" figures divide by the reference's throughput, and on a shared VM
the same run's speed drifts by a quarter within an hour; a ratio is only sound when both sides
run interleaved on the same box (``vs_reference.sh``). The reference's code stays out of this
repository: point ``--redcore`` at your own checkout of github sunjunaimer/RedCore (the folder
that holds ``train_miss.py``; measured at commit b2c6a2d) and run this file with a Python that
has what it imports:

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 numpy h5py scikit-learn
    /tmp/refvenv/bin/pip install --no-deps pytorch-warmup==0.2.0   # built, never stepped
    /tmp/refvenv/bin/python benchmarks/reference_redcore.py --redcore RedCore/RedCore --data DATA

``DATA`` is a folder made by ``make_iemocap.py`` (the MMIN/RedCore feature layout). The script
runs the reference's own ``train_miss.py`` unchanged (``runpy``, as ``__main__``) with the
arguments of its ``scripts/CAP_mmin.sh`` (first loop iteration) and times it by wrapping three
methods: ``redcoreMMINModel.optimize_parameters`` (each training step), ``BaseModel.eval`` /
``BaseModel.train`` (``train_miss.eval`` calls them first and last: one evaluation pass) and
``BaseModel.test`` (rows evaluated). It prints one JSON line with the figures
``bench_iemocap.py`` prints for mmcore: training samples/s over the steps that are not an
epoch's first (data loading included, evaluation excluded), evaluation items/s (rows x missing
patterns per second of the evaluation passes, data loading and sklearn metrics included, as
mmcore's ``eval.json`` includes scoring) and peak RSS.

Deviations from the script, all for running it here: ``--gpu_ids=-1`` (CPU); ``--niter=EPOCHS
--niter_decay=0`` (the script: 30 + 30; the learning rate is constant in the first 30 either
way); logs and checkpoints in a temporary folder; torch, numpy and random seeded (the reference
seeds nothing); ``data/config/IEMOCAP_config.json`` of the checkout points at ``--data`` during
the run and is put back after (kept beside it as ``.mmcore-original`` meanwhile, and put back by
the next run if this one was killed); ``PIL.Image`` and ``torchvision.transforms`` are stubbed when not
installed (``data/base_dataset.py`` imports them for image transforms this path never runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import runpy
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

CONFIG = Path("data") / "config" / "IEMOCAP_config.json"  # where the reference's dataset reads its paths


def script_arguments(log_dir: str, checkpoints: str, epochs: int, batch: int, fold: int) -> list[str]:
    """``scripts/CAP_mmin.sh``'s arguments for ``train_miss.py`` (its loop's first run), on a CPU."""
    return [
        "train_miss.py", "--dataset_mode=multimodal_miss", "--model=redcore_mmin", f"--log_dir={log_dir}",
        f"--checkpoints_dir={checkpoints}", "--gpu_ids=-1",
        "--A_type=comparE", "--input_dim_a=130", "--norm_method=trn", "--embd_size_a=128", "--embd_method_a=maxpool",
        "--V_type=denseface", "--input_dim_v=342", "--embd_size_v=128", "--embd_method_v=maxpool",
        "--L_type=bert_large", "--input_dim_l=1024", "--embd_size_l=128",
        "--AE_layers=256,128,64", "--n_blocks=5", "--num_thread=0", "--corpus=IEMOCAP",
        "--pretrained_path=checkpoints/CAP_utt_fusion_AVL_run1",
        "--ce_weight=1.0", "--mse_weight=4.0", "--cycle_weight=2.0",
        "--output_dim=4", "--cls_layers=128,128", "--dropout_rate=0.5",
        f"--niter={epochs}", "--niter_decay=0", "--verbose", "--print_freq=10", "--in_mem",
        f"--batch_size={batch}", "--lr=2e-4", "--run_idx=1", "--weight_decay=1e-5",
        "--name=redcore65_IEMOCAP_a", "--suffix=block_{n_blocks}_run{run_idx}", "--has_test",
        "--record_folder=result_visualization/redcore0", f"--cvNo={fold}", "--etabetaind=0",
    ]


def stub_unused_imports() -> list[str]:
    """Empty modules for imports the reference makes but never uses on this path."""
    stubbed = []
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        pil, image = types.ModuleType("PIL"), types.ModuleType("PIL.Image")
        image.BICUBIC = 3  # read at import time
        pil.Image = image
        sys.modules |= {"PIL": pil, "PIL.Image": image}
        stubbed.append("PIL.Image")
    try:
        import torchvision.transforms  # noqa: F401
    except ImportError:
        vision, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        vision.transforms = transforms
        sys.modules |= {"torchvision": vision, "torchvision.transforms": transforms}
        stubbed.append("torchvision.transforms")
    return stubbed


class Clock:
    """Timestamps from the wrapped methods: training steps and evaluation passes."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []  # (epoch, end of the step)
        self.batches: list[int] = []
        self.passes: list[tuple[float, int]] = []  # (seconds, rows)
        self._pass: dict[str, float] = {}

    def wrap(self, model_class: Any, base_class: Any) -> None:
        optimize, evaluate, train, test = (model_class.optimize_parameters, base_class.eval,
                                           base_class.train, base_class.test)
        clock = self

        def timed_optimize(model: Any, epoch: int) -> None:
            optimize(model, epoch)
            clock.steps.append((epoch, time.perf_counter()))
            clock.batches.append(int(model.label.shape[0]))

        def timed_eval(model: Any) -> Any:
            clock._pass = {"start": time.perf_counter(), "rows": 0}
            return evaluate(model)

        def counted_test(model: Any) -> Any:
            result = test(model)
            if clock._pass:
                clock._pass["rows"] += int(model.label.shape[0])
            return result

        def timed_train(model: Any, *args: Any) -> Any:
            result = train(model, *args)
            if clock._pass:
                clock.passes.append((time.perf_counter() - clock._pass["start"], int(clock._pass["rows"])))
                clock._pass = {}
            return result

        model_class.optimize_parameters = timed_optimize
        base_class.eval, base_class.test, base_class.train = timed_eval, counted_test, timed_train

    def training_rate(self) -> float:
        """Samples per second over each epoch's steps after its first (between them: loading and steps only)."""
        samples, seconds = 0, 0.0
        for epoch in sorted({e for e, _ in self.steps}):
            index = [i for i, (e, _) in enumerate(self.steps) if e == epoch]
            if len(index) > 1:
                seconds += self.steps[index[-1]][1] - self.steps[index[0]][1]
                samples += sum(self.batches[i] for i in index[1:])
        return samples / seconds if seconds else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redcore", required=True, help="the reference checkout's folder that holds train_miss.py")
    parser.add_argument("--data", required=True, help="a make_iemocap.py folder")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serve-eval", action="store_true",
                        help="after the run, keep the trained model and time one evaluation pass (val + test) "
                             "per 'pass' line on stdin (eval_lockstep.py's protocol)")
    args = parser.parse_args()
    os.environ |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""}
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    stubbed = stub_unused_imports()
    reference = Path(args.redcore).resolve()
    if not (reference / "train_miss.py").is_file():
        sys.exit(f"reference_redcore.py: --redcore {reference}: no train_miss.py there (give the folder that holds it)")
    data = str(Path(args.data).resolve())
    config = reference / CONFIG
    kept = config.with_name(config.name + ".mmcore-original")  # the checkout's own config while a run has it
    if kept.exists():  # a run killed before it could put the config back (kill -9): put it back now
        kept.replace(config)
    original = config.read_text()
    kept.write_text(original)
    work = tempfile.mkdtemp(prefix="redcore-ref-")
    clock = Clock()
    try:
        config.write_text(json.dumps({"data_root": data, "target_root": os.path.join(data, "target"),
                                      "total_cv": 10, "feature_root": data}, indent=4))
        sys.path.insert(0, str(reference))
        os.chdir(reference)  # as `cd RedCore && python train_miss.py ...`
        from models.base_model import BaseModel
        from models.redcore_mmin_model import redcoreMMINModel

        clock.wrap(redcoreMMINModel, BaseModel)
        sys.argv = script_arguments(f"{work}/logs", f"{work}/checkpoints", args.epochs, args.batch, args.fold)
        script = runpy.run_path(str(reference / "train_miss.py"), run_name="__main__")  # its globals, after it ran
    finally:
        kept.replace(config)
        shutil.rmtree(work, ignore_errors=True)  # the reference's logs and checkpoints: not a result here
    rows = sum(r for _, r in clock.passes)
    seconds = sum(s for s, _ in clock.passes)
    print(json.dumps({
        "kind": "reference",
        "samples_per_s": clock.training_rate(),
        "eval_items_per_s": rows / seconds if seconds else float("nan"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": len(clock.steps),
        "eval_passes": len(clock.passes),
        "stubbed": stubbed,
    }))
    if args.serve_eval:
        serve_eval(script, clock)


def serve_eval(script: dict[str, Any], clock: Clock) -> None:
    """``eval_lockstep.py``'s reference side: each pass runs the script's own ``eval`` on its
    validation and test sets with the model it trained (the best epoch's weights, which its end
    loaded), as the script calls it; items are the rows the wrapped ``test`` counted."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_lockstep import serve

    def one_pass() -> int:
        before = len(clock.passes)
        for split in ("val_dataset", "tst_dataset"):
            script["eval"](script["model"], script[split])
        return sum(rows for _, rows in clock.passes[before:])

    serve(one_pass)


if __name__ == "__main__":
    main()
