"""``mmcore export RUN --format torchscript|onnx``: one self-contained artifact per run.

The artifact holds the run's input transform (as buffers), encoders, the engine's zeroing of
absent rows, the imputer and the fusion head; it takes the raw features of every modality in
the run's order, their lengths (sequence modalities; vectors get a dummy ``[B]`` tensor) and a
presence mask ``[B, M]`` (absent = False), and returns the fusion head's outputs (logits or the
regression value). Rows of an absent modality may hold anything, NaN included (as ``mmcore predict``
reads an absent row): they are zeroed inside. Features of any real dtype are read as float32 and a
0/1 presence mask of any dtype as bool, as ``predict`` reads its file.

It is traced (``torch.jit.trace``; ONNX through ``torch.onnx.export``) on rows of the run's own
test split with a random presence mask, then checked: its outputs on the whole split, under that
mask and under every presence pattern (as many as the split has rows), and on single rows, must
equal ``mmcore predict``'s (the engine's evaluation) within ``ATOL``, computed in float32 as the
artifact computes whatever the run's precision (a bf16 run's own predictions differ from both by
bf16 rounding; ``export.json`` records ``run_precision``); a component whose
behaviour the trace cannot capture (Python branches on the mask, unsupported operators) fails
that check or the export itself, and the one-line error names the components. Files go to
``RUN/exports/model.<ts|onnx>`` with ``export.json`` (inputs, tolerance, measured difference)
and a loading example; the model card lists them. Those paths are checked before the run is
opened, and a file that cannot be written is an error naming the path, never the components.

The tracer warns (``TracerWarning``) at every shape check a component makes on its input; those
warnings are silenced during the trace only, because the check against predict on other rows
and masks is what tells whether the trace generalises.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmcore.errors import MMCoreError

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
ATOL = 1e-4  # max |exported - predict| on logits, float32 on the CPU (measured ~1e-6)
SINGLE_ROWS = 4  # test rows also checked one at a time: a trace may fix the batch size it saw


class ExportError(MMCoreError):
    """The run's components cannot be exported in this format."""


class Exported(nn.Module):
    """Transform → encoders → zero absent rows → imputer → fusion, on plain tensors."""

    def __init__(self, model: nn.Module, transform: Any) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.modalities)
        self.sequence = [bool(s.sequence) for s in model.specs]
        for m in self.names:  # identity where the transform names nothing: shift 0, scale 1
            step = transform.steps.get(m) if transform is not None else None
            dim = next(s.dim for s in model.specs if s.name == m)
            mean = step.stats["mean"] if step is not None and step.rule == "standardize" else torch.zeros(dim)
            std = step.stats["std"] if step is not None and step.rule == "standardize" else torch.ones(dim)
            self.register_buffer(f"mean_{m}", mean.clone().float())
            self.register_buffer(f"std_{m}", std.clone().float())

    def forward(self, features: list[Tensor], lengths: list[Tensor], present: Tensor) -> Tensor:
        # as predict reads a file: features of any real dtype in float32, a 0/1 mask of any dtype as bool
        # (the imputers' torch.where refuses a 0/1 integer or float mask; float64 features met float32 weights)
        present = present.to(torch.bool)
        encoded = []
        for i, m in enumerate(self.names):
            mean = getattr(self, f"mean_{m}")
            x = (features[i].to(mean.dtype) - mean) / getattr(self, f"std_{m}")
            keep = present[:, i].unsqueeze(1)  # a select, not a product: an absent row of NaN (as predict reads one) gives zeros
            if self.sequence[i]:
                keep = keep & (torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths[i].unsqueeze(1))
                x = torch.where(keep.unsqueeze(-1), x, torch.zeros_like(x))  # an empty row: every frame zero
                # then one zero frame, as the datasets load an empty sequence and predict reads one
                encoded.append(self.model.encoders[m](x, lengths[i].clamp(min=1)))
            else:
                encoded.append(self.model.encoders[m](torch.where(keep, x, torch.zeros_like(x)), None))
        return self.model.complete(torch.stack(encoded, dim=1), present, unimodal=False).prediction


def _inputs(split: Any, names: list[str], index: Tensor, present: Tensor, raw: Any) -> tuple:
    feats = [(raw.invert(m, split.features[m], split.lengths.get(m)) if raw is not None else split.features[m])
             .index_select(0, index).contiguous() for m in names]
    lengths = [split.lengths[m].index_select(0, index) if m in split.lengths else torch.ones(len(index), dtype=torch.int64)
               for m in names]
    return feats, lengths, present.index_select(0, index)


def export_run(run_dir: Path, fmt: str, *, checkpoint: str = "best") -> dict[str, Any]:
    """Write ``RUN/exports/<file>`` and ``export.json``; returns the record. See the module docstring."""
    from mmcore.after.card import write_model_card
    from mmcore.after.runs import open_run

    if fmt not in FORMATS:
        raise MMCoreError(f"--format: '{fmt}' is not one of: {', '.join(FORMATS)}")
    out_dir = check_export_paths(run_dir, fmt, checkpoint)  # before the run is opened and traced
    # the artifact computes in float32: so does the predict it is checked against, whatever the run's
    # precision (a bf16 run's predict differs from it by bf16 rounding, which no component causes)
    with open_run(run_dir, ["precision=fp32"], checkpoint, "cpu") as run:
        s = run.session
        model, names = s.model.eval(), s.names
        transform = run.transform.transform if run.transform is not None else None
        module = Exported(model, transform).eval()
        split = s.splits["test"]
        gen = torch.Generator().manual_seed(0)
        present = torch.rand(len(split), len(names), generator=gen) < 0.6
        present[torch.arange(len(split)), torch.randint(len(names), (len(split),), generator=gen)] = True
        n = len(split)
        example = _inputs(split, names, torch.arange(0, min(n, 16)), present, transform)
        path = out_dir / FORMATS[fmt]
        blamed = _components(s.recipe)
        try:
            with torch.no_grad():
                artifact = _trace(module, example, fmt, names)
        except Exception as exc:  # a tracer or exporter refusing an operator: name the components
            raise ExportError(f"export --format {fmt}: the run's components ({blamed}) cannot be exported: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        _save(artifact, path)
        diff, patterns = _check_artifact(path, fmt, s, split, present, transform, blamed)
        taken, specs = _artifact_inputs(path, fmt), s.specs
        record = {"format": fmt, "file": path.name, "checkpoint": checkpoint, "model_sha256": run.model_sha256,
                  "modalities": names, "inputs": _input_doc(specs, taken),
                  "tolerance": ATOL, "max_abs_diff": diff,
                  "checked_rows": n, "checked_patterns": patterns, "checked_single_rows": min(n, SINGLE_ROWS),
                  "input_form": "raw (the run's input transform is inside)", "precision": "fp32",
                  "run_precision": recipe_precision(Path(run_dir))}
    (out_dir / "export.json").write_text(json.dumps(record, indent=1))
    (out_dir / "README.md").write_text(_example(fmt, path.name, record, _example_code(path.name, specs, taken)))
    write_model_card(Path(run_dir))
    return record


def recipe_precision(run_dir: Path) -> str:
    """The precision the run trained and evaluates in (``mmcore predict`` uses it)."""
    from mmcore.recipe import load_yaml

    return str(load_yaml(run_dir / "recipe.yaml").get("precision", "fp32"))


def pattern_masks(n: int, m: int) -> Tensor:
    """``[n, m]`` presence masks going through every non-empty subset of ``m`` modalities row by
    row (as many as ``n`` rows hold): a trace that fixed a branch on the masks it saw (a modality
    with no absent row among them) fails on the patterns it did not see."""
    k = torch.arange(n, dtype=torch.int64) % (2**m - 1) + 1
    return (k.unsqueeze(1) >> torch.arange(m, dtype=torch.int64)) & 1 == 1


def _check_artifact(path: Path, fmt: str, s: Any, split: Any, present: Tensor, transform: Any,
                    blamed: str) -> tuple[float, int]:
    """The artifact against ``predict`` on the whole test split, under the traced random mask and
    under every present-subset (``pattern_masks``), then on single rows (a batch of 1); returns
    the largest difference and the number of subsets checked. Deletes the file and raises when
    it fails or differs by more than ``ATOL``."""
    from mmcore.engine.evaluate import predict

    n, names = len(split), s.names
    masks = {"traced": present, "patterns": pattern_masks(n, len(names))}
    expected = predict(s.model, split, masks, s.plan.train.eval_batch_size, s.runtime.autocast)
    everything = torch.arange(n)
    try:
        got = {c: _run_artifact(path, fmt, _inputs(split, names, everything, mask, transform), names) for c, mask in masks.items()}
        singles = [_run_artifact(path, fmt, _inputs(split, names, everything[r : r + 1], masks["patterns"], transform), names)
                   for r in range(min(n, SINGLE_ROWS))]
    except ExportError:
        raise
    except Exception as exc:  # shapes or branches the trace fixed to its example rows
        path.unlink(missing_ok=True)
        raise ExportError(f"export --format {fmt}: the exported model of ({blamed}) fails on other rows or masks than "
                          f"it was traced with (data-dependent shapes or branches): {type(exc).__name__}: "
                          f"{(str(exc).strip().splitlines() or [''])[-1][:200]}") from None
    diffs = [float((got[c] - expected[c].float()).abs().max()) for c in masks]
    diffs += [float((one - expected["patterns"][r : r + 1].float()).abs().max()) for r, one in enumerate(singles)]
    diff = max(diffs)
    if not diff <= ATOL:
        path.unlink(missing_ok=True)
        raise ExportError(f"export --format {fmt}: the exported model differs from predict by {diff:.2e} (> {ATOL:g}); "
                          f"components ({blamed}) behave differently when traced")
    return diff, min(n, 2 ** len(names) - 1)


def _components(recipe: dict[str, Any]) -> str:
    """The recipe's component names, for the one-line refusal."""
    model = recipe["model"]
    encoders = sorted({n["type"] for n in model["encoders"].values() if isinstance(n, dict)})
    return f"encoders {', '.join(encoders)}; imputer {model['imputer']['type']}; fusion {model['fusion']['type']}"


def _input_doc(specs: list[Any], taken: list[str] | None) -> list[str]:
    """One line per input the artifact reads. TorchScript (``taken`` None) takes a lengths tensor
    for every modality, a vector's ignored; the ONNX exporter prunes those unused inputs, so its
    lines are the file's own input names (``taken``), never an input the session would refuse."""
    if taken is None:
        return [f"{s.name}: [B, {s.max_len}, {s.dim}] float32 + lengths [B] int64" if s.sequence
                else f"{s.name}: [B, {s.dim}] float32 (its lengths: any [B] int64, unused)" for s in specs] + [
                f"present: [B, {len(specs)}] bool"]
    shapes = {f"x.{s.name}": f"[B, {s.max_len}, {s.dim}] float32" if s.sequence else f"[B, {s.dim}] float32"
              for s in specs}
    shapes |= {f"len.{s.name}": "[B] int64" for s in specs} | {"present": f"[B, {len(specs)}] bool"}
    return [f"{name}: {shapes[name]}" for name in taken]


def _artifact_inputs(path: Path, fmt: str) -> list[str] | None:
    """The ONNX file's input names in the exporter's order (None for TorchScript, whose inputs
    are the three lists of ``Exported.forward``); read from the file, as a user's session sees them."""
    if fmt == "torchscript":
        return None
    import onnxruntime as ort  # present: _check_artifact needed it

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def check_export_paths(run_dir: Path, fmt: str, checkpoint: str) -> Path:
    """``RUN/exports``, with the files an export writes there checked up front: an ``exports``
    that is a file or a ``model.ts`` that is a folder is one line naming that path, before the
    run is opened. A run directory that is missing or not a run is named first, as ``open_run`` names it."""
    from mmcore.after.runs import check_run_dir
    from mmcore.paths import check_output_dir, check_output_file

    check_run_dir(Path(run_dir), checkpoint)
    out_dir = check_output_dir(Path(run_dir) / "exports", "export")
    for name in (FORMATS[fmt], "export.json", "README.md"):
        check_output_file(out_dir / name, "export")
    return out_dir


def _trace(module: nn.Module, example: tuple, fmt: str, names: list[str]) -> bytes:
    """The file's bytes, traced and serialised here: a component the format cannot hold (a
    custom autograd function) fails in serialisation, which is the components' error, never the
    output path's. The tracer's warnings about shape checks turned into constants are silenced:
    the check against predict decides instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if fmt == "torchscript":
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), buffer)
            return buffer.getvalue()
        feats, lengths, present = example
        flat = _Flat(module, len(names))
        inputs = (*feats, *lengths, present)
        input_names = _onnx_names(names)
        buffer = io.BytesIO()
        torch.onnx.export(flat, inputs, buffer, input_names=input_names, output_names=["prediction"],
                          dynamic_axes={k: {0: "batch"} for k in [*input_names, "prediction"]}, dynamo=False)
        return buffer.getvalue()


def _save(artifact: bytes, path: Path) -> None:
    """Write the artifact's bytes; a failure is the output path's, said with the path (not the components')."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(artifact)
    except OSError as exc:
        reason = exc.strerror or (str(exc).splitlines() or [""])[0]
        raise ExportError(f"export: cannot write {path}: {reason}") from None


class _Flat(nn.Module):
    """ONNX wants flat inputs."""

    def __init__(self, module: nn.Module, m: int) -> None:
        super().__init__()
        self.module, self.m = module, m

    def forward(self, *args: Tensor) -> Tensor:
        return self.module(list(args[: self.m]), list(args[self.m : 2 * self.m]), args[-1])


def _onnx_names(names: list[str]) -> list[str]:
    return [f"x.{m}" for m in names] + [f"len.{m}" for m in names] + ["present"]


def _run_artifact(path: Path, fmt: str, inputs: tuple, modalities: list[str]) -> Tensor:
    feats, lengths, present = inputs
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(feats, lengths, present).float()
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError('export --format onnx: checking the file needs onnxruntime: pip install "mmcore[export]"') from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}  # unused inputs (vector lengths) are pruned by the exporter
    given = dict(zip(_onnx_names(modalities), (t.numpy() for t in (*feats, *lengths, present))))
    return torch.from_numpy(session.run(None, {k: v for k, v in given.items() if k in wanted})[0]).float()


def _example(fmt: str, file: str, record: dict[str, Any], code: str) -> str:
    shapes = "\n".join(f"#   {line}" for line in record["inputs"])
    return (f"# Exported model ({fmt})\n\nInputs in this order ({', '.join(record['modalities'])}), raw features "
            f"(the run's input transform is inside):\n\n```\n{shapes}\n```\n\n"
            f"A runnable example on {EXAMPLE_ROWS} rows of zeros with every modality present (put your own "
            f"features in their place; an absent modality's rows may hold anything, NaN included):\n\n"
            f"```python\n{code}\n```\n\n"
            f"Checked against `mmcore predict` on {record['checked_rows']} test rows with random presence masks and "
            f"{record['checked_patterns']} presence patterns, and on single rows: "
            f"max |difference| {record['max_abs_diff']:.2e} (tolerance {record['tolerance']:g}), both in float32"
            + (f"; the run evaluates in {record['run_precision']}, so `mmcore predict` differs by its rounding"
               if record["run_precision"] != "fp32" else "") + ".\n")


EXAMPLE_ROWS = 2  # the README example's batch


def _example_code(file: str, specs: list[Any], taken: list[str] | None) -> str:
    """Code that loads the file and runs it on zeros shaped as the run's own inputs (``taken``:
    the ONNX file's names; None for TorchScript), so a copied example runs as printed (a test
    runs it for both formats)."""
    b, m = EXAMPLE_ROWS, len(specs)
    mask = f"({b}, {m}), dtype=bool"
    if taken is None:
        feats = ", ".join(f"torch.zeros({b}, {s.max_len}, {s.dim})" if s.sequence else f"torch.zeros({b}, {s.dim})"
                          for s in specs)
        lengths = ", ".join(f"torch.full(({b},), {s.max_len})" if s.sequence else f"torch.ones({b}, dtype=torch.int64)"
                            for s in specs)
        unused = "" if all(s.sequence for s in specs) else "  # a vector modality's is not read"
        return (f"import torch\nmodel = torch.jit.load('{file}')\n"
                f"features = [{feats}]  # {', '.join(s.name for s in specs)}\n"
                f"lengths = [{lengths}]{unused}\n"
                f"present = torch.ones({mask.replace('bool', 'torch.bool')})  # [B, M], False = absent\n"
                "prediction = model(features, lengths, present)")
    arrays = {f"x.{s.name}": (f"np.zeros(({b}, {s.max_len}, {s.dim}), dtype=np.float32)" if s.sequence
                              else f"np.zeros(({b}, {s.dim}), dtype=np.float32)") for s in specs}
    arrays |= {f"len.{s.name}": f"np.full(({b},), {s.max_len}, dtype=np.int64)" for s in specs}
    arrays["present"] = f"np.ones({mask})"
    lines = "".join(f"    '{name}': {arrays[name]},{'  # False = absent' if name == 'present' else ''}\n" for name in taken)
    return (f"import numpy as np\nimport onnxruntime as ort\nsession = ort.InferenceSession('{file}')\n"
            f"inputs = {{\n{lines}}}\nprediction = session.run(None, inputs)[0]")
