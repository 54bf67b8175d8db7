"""Every shipped recipe, shrunk to toy size, keeps the reproducibility promises.

(a) the same recipe run twice into two folders writes the same files, byte for byte but for what
holds time, paths or speed (``VOLATILE``, which docs/reliability.md lists); (b) a run stopped by
``train.max_steps`` in the middle of an epoch and resumed equals the straight run; (c) numbers
are bit-identical at one CPU thread count only (PyTorch sums by thread), so the count is recorded
and a resume under another one warns; (d) ``mmcore eval`` on the finished run reproduces
``eval.json``; (e) the recipe rewritten (keys reordered, comments, defaults spelled out) resolves
to the same recipe and trains to the same numbers. (a), (b) and (d) run on every recipe found on
disk, so a new recipe is covered; (c) to (e) on one.

A recipe is shrunk, not edited: every width in ``model`` becomes 8 (one block, two heads), two
epochs of 16-row batches, and the data is generated: ``mmcore.synthetic`` at 160 samples and
narrow features, a corpus dataset replaced by a ``corpora.features`` folder with the corpus's
modality names, kinds and task (``CORPUS_LAYOUTS``; a recipe on another dataset fails until it
gets a row there).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file

from mmcore.engine.trainer import run
from mmcore.plugins import get_registry
from mmcore.recipe import dump_yaml, load_recipe, load_yaml

pytest.importorskip("mmcore_corpora")  # the corpus recipes are read from its features folders
pytest.importorskip("mmcore_redcore")  # most recipes use RedCore's imputer and balancer

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted([*ROOT.glob("recipes/*.yaml"), *ROOT.glob("plugins/*/recipes/*.yaml")])
VOLATILE = {  # file -> keys (dotted) or line starts that hold time, paths or this machine's speed, never numbers
    "eval.json": ("cost.train_samples_per_s", "cost.eval_items_per_s", "cost.peak_host_rss_mb", "cost.peak_gpu_memory_mb"),
    "manifest.json": ("created", "recipe.output"),
    "recipe.yaml": ("output: ",),
    "MODEL_CARD.md": ("Run `",),  # the run's folder name and creation time
}
# dataset type -> (modality -> (width, frames or None for a vector), task: classes or "regression")
CORPUS_LAYOUTS: dict[str, tuple[dict[str, tuple[int, int | None]], int | str]] = {
    "corpora.handwritten": ({"fou": (5, None), "fac": (4, None), "kar": (3, None), "pix": (5, None), "zer": (3, None),
                             "mor": (2, None)}, 10),
    "corpora.iemocap": ({"a": (4, 6), "v": (3, 5), "l": (5, 4)}, 4),
    "corpora.mosei": ({"a": (4, 6), "v": (3, 5), "l": (5, 4)}, 3),
}
SHRUNK_OPTIONS = {"layers": None, "heads": 2, "ff_mult": 1, "hidden": [8], "blocks": 1}  # None: [8] or 1 by kind


def _recipe_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------- shrinking


def write_corpus_like(root: Path, dataset: dict[str, Any]) -> None:
    """A ``corpora.features`` folder in the layout of ``dataset``'s corpus (48/16/16 rows)."""
    layout, task = CORPUS_LAYOUTS[dataset["type"]]
    if dataset.get("task") == "regression":
        task = "regression"
    rng = np.random.default_rng(5)
    offset = 0
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        tensors: dict[str, torch.Tensor] = {}
        for name, (width, frames) in layout.items():
            shape = (n, width) if frames is None else (n, frames, width)
            tensors[f"x.{name}"] = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
            if frames is not None:
                tensors[f"len.{name}"] = torch.from_numpy(rng.integers(1, frames + 1, size=n).astype(np.int64))
        signal = tensors[f"x.{next(iter(layout))}"].reshape(n, -1)[:, 0]
        if task == "regression":
            tensors["target"], meta = signal.clone(), {"task": "regression"}
        else:
            tensors["target"] = torch.arange(n, dtype=torch.int64) % int(task)
            meta = {"task": "classification", "num_classes": str(task)}
        tensors["ids"] = torch.arange(offset, offset + n, dtype=torch.int64)
        offset += n
        root.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(root / f"{split}.safetensors"), metadata={**meta, "modalities": ",".join(layout)})


def data_overrides(path: Path, data_root: Path) -> list[str]:
    """The dataset at toy size: synthetic data shrunk, a corpus replaced by a generated folder."""
    dataset = load_yaml(path)["dataset"]
    kind = dataset["type"]
    if kind == "mmcore.synthetic":
        n = len(dataset.get("names") or dataset.get("dims") or []) or int(dataset.get("modalities", 3))
        out = ["dataset.samples=160", "dataset.dim=6"]  # 2*(classes-1) at 4 classes
        if dataset.get("dims") is not None:
            out.append(f"dataset.dims={[6 + i for i in range(n)]}")
        if dataset.get("sequence"):
            out.append("dataset.max_len=4")
            if dataset.get("min_lens") is not None:
                out.append(f"dataset.min_lens={[2] * n}")
        return out
    assert kind in CORPUS_LAYOUTS, f"{_recipe_id(path)}: no toy data for dataset '{kind}'; add it to CORPUS_LAYOUTS"
    if not data_root.exists():
        write_corpus_like(data_root, dataset)
    return [f"dataset={{type: corpora.features, root: {data_root}}}"]


def model_overrides(model: dict[str, Any], prefix: str = "model") -> list[str]:
    """Every width, depth and head count under ``model`` at toy size (``SHRUNK_OPTIONS``)."""
    out: list[str] = []
    for key, value in model.items():
        where = f"{prefix}.{key}"
        if isinstance(value, dict):
            out += model_overrides(value, where)
        elif key in SHRUNK_OPTIONS and value is not None:
            small = SHRUNK_OPTIONS[key]
            if small is None:
                small = [8] if isinstance(value, list) else 1
            out.append(f"{where}={json.dumps(small)}")
    return out


def shrunk(path: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``path`` resolved at toy size, writing under ``out``; ``extra`` overrides come last. The
    generated data is written once beside ``out`` and shared by every run of the recipe."""
    data = data_overrides(path, out.parent / f"data-{path.stem}")
    base = [*data, f"output={out}", "device=cpu", "model.dim=8", "train.epochs=2", "train.batch_size=16"]
    resolved = load_recipe(path, base, get_registry())
    tail = ["train.schedule.constant_epochs=1"] if "constant_epochs" in resolved["train"]["schedule"] else []
    return load_recipe(path, [*base, *model_overrides(resolved["model"]), *tail, *extra], get_registry())


def train(recipe: dict[str, Any], **options: Any) -> Any:
    return run(recipe, console=Console(file=io.StringIO()), show_progress=False, **options)


# --------------------------------------------------------------------------- comparing


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    tree.pop(last, None)


def stable_json(path: Path, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON file of a run without its ``VOLATILE`` keys (and the dotted keys ``also``)."""
    tree = json.loads(path.read_text())
    for dotted in (*VOLATILE.get(path.name, ()), *also):
        _drop(tree, dotted)
    return tree


def run_bytes(run_dir: Path) -> dict[str, bytes]:
    """What must repeat to the byte: the log and every checkpoint tensor file."""
    files = [run_dir / "metrics.jsonl", *sorted((run_dir / "checkpoints").glob("*/*.safetensors"))]
    return {str(f.relative_to(run_dir)): f.read_bytes() for f in files}


def stable_text(path: Path, also: tuple[str, ...] = ()) -> str:
    """A file of a run as text without its ``VOLATILE`` lines; a JSON file without those keys."""
    if path.suffix == ".json":
        return json.dumps(stable_json(path, also), sort_keys=True)
    starts = (*VOLATILE.get(path.name, ()), *also)
    return "".join(line for line in path.read_text().splitlines(True) if not line.startswith(starts))


def assert_same_run(a: Path, b: Path, stopped: bool = False) -> None:
    """Every file of run folders ``a`` and ``b`` is the same, but for ``VOLATILE`` keys and lines
    (``stopped``: ``b`` was started with ``train.max_steps``, which its recipe records)."""
    names = sorted(str(f.relative_to(a)) for f in a.rglob("*") if f.is_file())
    assert names == sorted(str(f.relative_to(b)) for f in b.rglob("*") if f.is_file())
    differ = []
    for name in names:
        also = () if not stopped else ("recipe.train.max_steps",) if name == "manifest.json" else ("  max_steps: ",)
        if (a / name).read_bytes() != (b / name).read_bytes() and (
            (a / name).suffix not in (".json", ".yaml", ".md") or stable_text(a / name, also) != stable_text(b / name, also)
        ):
            differ.append(name)
    assert not differ, f"{a} and {b} differ in {differ}"


def assert_same_numbers(a: Path, b: Path) -> None:
    """eval.json's results and best epoch, and the checkpoint tensors, equal (metrics.jsonl too)."""
    assert run_bytes(a) == run_bytes(b), f"{a} and {b} differ in their log or checkpoint tensors"
    ea, eb = json.loads((a / "eval.json").read_text()), json.loads((b / "eval.json").read_text())
    assert (ea["results"], ea["best_epoch"]) == (eb["results"], eb["best_epoch"])


# --------------------------------------------------------------------------- (a), (b), (d) on every recipe


@pytest.mark.parametrize("path", RECIPES, ids=_recipe_id)
def test_recipe_repeats_and_resumes_to_the_byte(path: Path, tmp_path: Path) -> None:
    """Two straight runs, and a run stopped one step into its second epoch then resumed, write the
    same bytes; evaluating the finished run again gives eval.json's numbers."""
    first = train(shrunk(path, tmp_path / "first"))
    second = train(shrunk(path, tmp_path / "second"))
    assert first.step == second.step and first.step % 2 == 0 and first.step >= 4  # two epochs, two or more steps each
    assert_same_run(first.run_dir, second.run_dir)

    stop = first.step // 2 + 1  # inside epoch 2: the epoch's shuffle, masks and running sums are restored
    stopped = train(shrunk(path, tmp_path / "stopped", f"train.max_steps={stop}"))
    assert stopped.stopped_early and stopped.step == stop and not (stopped.run_dir / "eval.json").exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(shrunk(path, tmp_path / "stopped"), run_dir=stopped.run_dir, resume=True)
    assert not [w for w in caught if "CPU threads" in str(w.message)]  # the same thread count: nothing to say
    assert_same_run(first.run_dir, resumed.run_dir, stopped=True)

    from mmcore.after.evaluation import evaluate_run

    written = json.loads((first.run_dir / "eval.json").read_text())
    again = evaluate_run(first.run_dir, split="test")
    assert again.results == written["results"]["test"] and again.pooled == written["pooled"]["test"]


# --------------------------------------------------------------------------- (c), (d), (e) on one recipe

ONE = next((p for p in RECIPES if p.name == "redcore_synthetic.yaml"), RECIPES[0])  # sequences, transformer, VIB, RedCore


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """Sets torch's CPU thread count for a test and puts the caller's back."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_thread_count_is_recorded_and_a_resume_under_another_warns(tmp_path: Path, threads: Callable[[int], None]) -> None:
    """Numbers are bit-identical at one thread count, not across counts (PyTorch's CPU LayerNorm
    backward sums by thread; 1 against 2 threads: weights 2e-7 apart after 8 quickstart steps):
    the manifest records the count, and a resume under another count says that its numbers will
    differ, where it used to be silent. (A run started under 2 threads is written here by editing
    the record: training under 2 threads on a busy 2-core machine takes minutes.)"""
    threads(1)
    stopped = train(shrunk(ONE, tmp_path / "stopped", "train.max_steps=3"))
    manifest = stopped.run_dir / "manifest.json"
    record = json.loads(manifest.read_text())
    assert record["threads"] == 1
    manifest.write_text(json.dumps({**record, "threads": 2}, indent=1))
    with pytest.warns(UserWarning, match=r"started with 2 CPU threads and resumes with 1; .* OMP_NUM_THREADS=2 for exact numbers"):
        train(shrunk(ONE, tmp_path / "stopped"), run_dir=stopped.run_dir, resume=True)


def test_eval_command_reproduces_eval_json(tmp_path: Path) -> None:
    """`mmcore eval RUN` (the command, on val and test) writes eval.json's numbers bit for bit."""
    from typer.testing import CliRunner

    from mmcore.cli import app

    done = train(shrunk(ONE, tmp_path / "run"))
    written = json.loads((done.run_dir / "eval.json").read_text())
    for split in ("test", "val"):
        result = CliRunner().invoke(app, ["eval", str(done.run_dir), "--split", split])
        assert result.exit_code == 0, result.output
        out = json.loads(next((done.run_dir / "evals").glob(f"*{split}*/eval.json")).read_text())
        assert out["results"][split] == written["results"][split], split


def _reversed(tree: Any) -> Any:
    """Every mapping's keys in reverse order."""
    return {key: _reversed(tree[key]) for key in reversed(list(tree))} if isinstance(tree, dict) else tree


def recipe_hash(recipe: dict[str, Any]) -> str:
    """The resolved recipe's hash as mmcore's own records take it (key order does not count)."""
    import hashlib

    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def test_rewritten_recipe_resolves_and_trains_the_same(tmp_path: Path) -> None:
    """The recipe with every default written out, keys reversed and comments added resolves to the
    same recipe (hash included) and trains to the same bytes."""
    straight = shrunk(ONE, tmp_path / "straight")
    lines = dump_yaml(_reversed({**straight, "output": str(tmp_path / "rewritten")})).splitlines()
    text = "# rewritten by hand\n" + "\n".join(f"{line}  # note" if line.rstrip()[-1:].isdigit() else line for line in lines)
    path = tmp_path / "rewritten.yaml"
    path.write_text(text + "\n")
    assert text.index("\ntrain:") < text.index("\nmodel:") < text.index("\nname:") and "# note" in text  # really rewritten
    rewritten = load_recipe(path, [], get_registry())
    assert recipe_hash({**rewritten, "output": ""}) == recipe_hash({**straight, "output": ""})
    a, b = train(straight), train(rewritten)
    assert_same_numbers(a.run_dir, b.run_dir)


def test_default_log_interval_survives_a_stop(tmp_path: Path) -> None:
    """`train.log_every: null` logs about 20 lines over the run; a run stopped by `train.max_steps`
    used to space its lines by the stop (every step up to 20) and so, resumed, logged another
    metrics.jsonl than the straight run. ``check_resume`` compares the files line for line."""
    from mmcore.testing import check_resume, tiny_recipe

    recipe = tiny_recipe(tmp_path, "train.batch_size=8", "train.epochs=2", "train.log_every=null")  # 35 steps an epoch
    check = check_resume(recipe, stop_after=20)
    steps = [json.loads(line)["step"] for line in check.lines if "loss" in json.loads(line)]
    assert steps == list(range(3, 70, 3))  # 70 // 20 = every 3 steps, before and after the stop


def test_what_may_differ_between_runs_is_what_the_docs_list() -> None:
    """Each ``VOLATILE`` key or line is named in docs/reliability.md's section on reproducibility."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    section = text[text.index("## Reproducibility of the shipped recipes") :].split("\n## ")[0]
    for name, keys in VOLATILE.items():
        assert f"`{name}`" in section, name
        for key in keys:
            assert f"`{key.rsplit('.', 1)[-1].strip(': `')}" in section, (name, key)
