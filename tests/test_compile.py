"""``compile: true``: regions compiled once for all lengths, for training only.

The padded length of every modality changes from batch to batch (the trainer cuts each batch to
its longest row), and so do the packed frame and present row counts. The trainer compiles the
transformer's blocks (``compile_region``) with ``dynamic=True``: the second epoch, with new
batches and new lengths, compiles nothing new, and evaluation runs them eagerly. A model without
regions is compiled whole, where the encoders' ``frames: auto`` takes the padded path.

The graphs are counted with an eager backend (what dynamo traces does not depend on the backend,
and the test stays fast); ``tests/test_checkpoint.py::test_compile_on_cpu`` runs inductor itself.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from compile_helpers import compiled_or_skip

from mmcore.components import Logger
from mmcore.engine.trainer import run
from mmcore.packing import use_packing
from mmcore.plugins import get_registry
from mmcore.testing import tiny_recipe

# length ranges apart from each other and from every other size (dims, batch sizes), so that no two
# sizes happen to be equal at the first trace (dynamo would then guard on that equality)
SEQUENCES = {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 400, "sequence": True,
             "dims": [5, 6, 7], "min_lens": [10, 21, 41], "max_lens": [19, 29, 48]}


def _graph_counter(graphs: list[int], seen: list[int]) -> type:
    """A logger that notes how many graphs dynamo has made by each epoch's end."""

    class Graphs(Logger):
        def open(self, run_dir, resume_step=None) -> None:
            pass

        def log_step(self, step, scalars) -> None:
            pass

        def log_epoch(self, epoch, step, scalars) -> None:
            seen.append(graphs[0])

        def close(self) -> None:
            pass

    return Graphs


def test_compiled_sequence_training_compiles_once_for_all_lengths(tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch._dynamo")
    torch._dynamo.reset()
    graphs, seen = [0], []
    real = torch.compile

    def counting(gm, example_inputs, **options):
        graphs[0] += 1
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, **{**kw, "backend": counting}))
    registry = get_registry()
    if "test.graphs" not in registry.names("logger"):
        registry.register("logger", "test.graphs", _graph_counter(graphs, seen), origin="tests")
    recipe = tiny_recipe(tmp_path, "compile=true", "train.epochs=3", "train.batch_size=50", dataset=SEQUENCES,
                         logging=[{"type": "test.graphs"}])
    recipe["model"]["encoders"]["default"] = {"type": "mmcore.transformer", "layers": 1, "heads": 2}
    counters.clear()
    result = run(recipe, show_progress=False)
    assert result.step == 18 and result.results is not None
    assert seen[0] > 0 and seen[1:] == [seen[0]] * 2, seen  # epochs 2 and 3: new lengths, no new graph
    assert not counters["graph_break"], dict(counters["graph_break"])  # the fast dropout masks are traced


def test_auto_frames_take_the_padded_path_while_compiling() -> None:
    lengths = torch.tensor([2, 9, 1])  # a third full: eager auto packs it
    assert use_packing("auto", lengths, 9)
    traced = torch.compile(lambda x: x + float(use_packing("auto", lengths, 9)), backend="eager", fullgraph=True)
    assert torch.equal(traced(torch.zeros(1)), torch.zeros(1))  # no graph break, and padded


def _counting_compile(monkeypatch) -> list[int]:
    pytest.importorskip("torch._dynamo")
    torch._dynamo.reset()
    graphs, real = [0], torch.compile

    def counting(gm, example_inputs, **options):
        graphs[0] += 1
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, **{**kw, "backend": counting}))
    return graphs


def test_regions_compile_in_training_and_run_eagerly_in_evaluation(monkeypatch) -> None:
    from mmcore.builtins.encoders import TransformerEncoder
    from mmcore.engine.compiling import compile_for_training
    from mmcore.types import ModalitySpec

    graphs = _counting_compile(monkeypatch)
    torch.manual_seed(0)
    encoder = TransformerEncoder(ModalitySpec("s", 3, sequence=True, max_len=9), dim=8, layers=3, heads=2, dropout=0.0, attn_dropout=0.0)
    x, lengths = torch.randn(4, 9, 3), torch.tensor([9, 7, 8, 9])
    want = encoder.eval()(x, lengths)
    forward, regional = compile_for_training(encoder, encoder)
    assert regional and forward is encoder  # the blocks are compiled, not the encoder's own forward
    assert torch.allclose(encoder(x, lengths), want) and graphs[0] == 0  # evaluation: eager
    encoder.train()(x, lengths)
    first = graphs[0]
    assert 1 <= first < 3  # the blocks share compiled code (the first block's input guards differ once)
    encoder.train()(x[:3, :8], lengths[:3] - 1)
    assert graphs[0] == first  # new sizes: nothing recompiled


def test_a_model_without_regions_is_compiled_whole(monkeypatch) -> None:
    from mmcore.engine.compiling import compile_for_training

    graphs = _counting_compile(monkeypatch)
    model = torch.nn.Linear(3, 2)
    forward, regional = compile_for_training(model, model)
    assert not regional and forward is not model
    forward(torch.randn(5, 3))
    assert graphs[0] == 1


def test_the_whole_forward_keeps_float_arguments_symbolic(monkeypatch) -> None:
    """Regions trace floats as constants; the whole-forward fallback runs models it knows nothing
    about, whose float arguments may change every step (a weight, a temperature): one graph."""
    from mmcore.engine.compiling import compile_for_training

    graphs = _counting_compile(monkeypatch)

    class Scaled(torch.nn.Linear):
        def forward(self, x, scale):
            return super().forward(x) * scale

    model = Scaled(3, 2)
    forward, regional = compile_for_training(model, model)
    x = torch.randn(5, 3)
    for scale in (0.5, 0.7, 0.9):
        assert torch.allclose(forward(x, scale), model(x, scale))
    assert not regional and graphs[0] == 1


def test_a_compiled_block_draws_the_eager_masks_on_a_cpu() -> None:
    """Compiled regions trace ``mmcore.fastdropout``'s masks (no graph break) and, on a CPU, draw
    them with aten's kernels from the same generator: a compiled training forward and backward
    equal the eager ones with the same seed. Runs inductor (skips where it cannot compile)."""
    import copy

    from mmcore.builtins.encoders import TransformerEncoder
    from mmcore.engine.compiling import compile_for_training
    from mmcore.fastdropout import use_fast_dropout
    from mmcore.types import ModalitySpec

    pytest.importorskip("torch._dynamo")
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = TransformerEncoder(ModalitySpec("s", 3, sequence=True, max_len=9), dim=8, layers=2, heads=2, dropout=0.3, attn_dropout=0.3)
    assert use_fast_dropout(eager) > 0
    compiled = copy.deepcopy(eager)
    compile_for_training(compiled, compiled)
    x, lengths = torch.randn(4, 9, 3), torch.tensor([9, 4, 8, 2])  # half padding: the packed path
    outputs = []
    for encoder in (eager, compiled):
        torch.manual_seed(1)
        y = compiled_or_skip(lambda: encoder.train()(x, lengths))
        y.pow(2).sum().backward()
        outputs.append((y, [p.grad for p in encoder.parameters()]))
    (want, want_grads), (got, got_grads) = outputs
    assert not torch.equal(want, eager.eval()(x, lengths))  # dropout did act
    assert torch.allclose(got, want, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        assert torch.allclose(g, w, atol=1e-5)


def test_a_compiled_block_compiles_once_on_both_sides_of_4096_frames(monkeypatch, tmp_path) -> None:
    """Inductor's CPU code sums a float reduction over more than 4096 elements in chunks and, with
    a symbolic length, guards on the side the first batch fell on; the CPU backend makes that
    choice without a guard, so one compilation serves a batch of 55 packed frames and one of 4400
    (the IEMOCAP recipe's audio blocks straddle the line from batch to batch), with the eager
    block's gradients. A second compilation then reads AOT autograd's cache. Runs inductor (skips
    where it cannot compile)."""
    import copy

    from mmcore.builtins.encoders import TransformerEncoder
    from mmcore.engine import compiling
    from mmcore.types import ModalitySpec

    pytest.importorskip("torch._dynamo")
    compilations, real = [0], compiling._inductor_without_size_guards

    def counted(gm, example_inputs, options=None):
        compilations[0] += 1
        return real(gm, example_inputs, options)

    monkeypatch.setattr(compiling, "_inductor_without_size_guards", counted)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cached graph brings back its guards
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = TransformerEncoder(ModalitySpec("s", 3, sequence=True, max_len=9), dim=8, layers=1, heads=2, dropout=0.0, attn_dropout=0.0)
    compiled = copy.deepcopy(eager)
    compiling.compile_for_training(compiled, compiled)
    for rows in (5, 400):  # lengths 9 and 2 alternate, 11 frames a pair of rows: packed (no size equals dim 8)
        x, lengths = torch.randn(2 * rows, 9, 3), torch.tensor([9, 2] * rows)
        grads = []
        for encoder in (eager, compiled):
            encoder.zero_grad()
            compiled_or_skip(lambda: encoder.train()(x, lengths)).pow(2).sum().backward()
            grads.append([p.grad.clone() for p in encoder.parameters()])
        for g, w in zip(*grads):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-5)
    assert compilations[0] == 1
    # compiled afresh, as a new run would (same inductor cache): AOT autograd reads its cache,
    # which a custom autograd.Function in the graph (packing's _Gather/_Scatter) would bypass
    from torch._functorch import config as functorch_config

    if getattr(functorch_config, "enable_autograd_cache", False):
        torch._dynamo.reset()
        counters.clear()
        again = copy.deepcopy(eager)
        compiling.compile_for_training(again, again)
        again.train()(x, lengths).sum().backward()
        assert counters["aot_autograd"]["autograd_cache_hit"] == 1, dict(counters["aot_autograd"])
