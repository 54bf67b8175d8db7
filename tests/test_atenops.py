"""mmcore.atenops: the masked softmax that compiled regions leave to aten is the written-out
softmax, forward and backward, and stays one call in a compiled graph (not decomposed)."""

from __future__ import annotations

import torch

from mmcore.atenops import masked_softmax

KEEP = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])


def _reference(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(~keep[:, None, None, :], float("-inf")).softmax(dim=-1)


def test_masked_softmax_is_the_softmax_of_the_kept_keys() -> None:
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    weights = masked_softmax(scores, KEEP)
    assert torch.allclose(weights, _reference(scores, KEEP), atol=1e-12)
    assert torch.equal(weights[0, :, :, 3:], torch.zeros(3, 5, 2, dtype=torch.float64))  # dropped keys: exactly 0
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5, dtype=torch.float64))
    # by hand: keys 0-2 kept with scores 0, log 3 and log 4 weigh 1/8, 3/8 and 4/8; the others' 5s nothing
    row = torch.tensor([1.0, 3.0, 4.0, 1.0, 1.0]).log().add(torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0])).expand(1, 1, 1, 5)
    assert torch.allclose(masked_softmax(row, KEEP[:1])[0, 0, 0], torch.tensor([0.125, 0.375, 0.5, 0.0, 0.0]))


def test_masked_softmax_backward_is_autograds_of_the_written_out_softmax() -> None:
    torch.manual_seed(1)
    scores = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    (got,) = torch.autograd.grad(masked_softmax(scores, KEEP), scores, upstream)
    (want,) = torch.autograd.grad(_reference(scores, KEEP), scores, upstream)
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, KEEP), (scores,))
    torch.library.opcheck(masked_softmax, (scores, KEEP))  # schema, fake kernel and autograd registration


def _traced_graphs(fn):
    """``fn`` compiled through AOT autograd, keeping each forward and backward graph (no C++
    compiler needed)."""
    from torch._dynamo.backends.common import aot_autograd

    graphs: list[torch.fx.GraphModule] = []

    def keep_graph(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # noqa: ARG001 - the backend's signature
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    return torch.compile(fn, backend=aot_autograd(fw_compiler=keep_graph, bw_compiler=keep_graph)), graphs


def _targets(graph: torch.fx.GraphModule) -> list:
    return [n.target for n in graph.graph.nodes if n.op == "call_function"]


def test_a_compiled_graph_calls_the_ops_instead_of_decomposing_them() -> None:
    compiled, graphs = _traced_graphs(lambda s: masked_softmax(s * 2.0, KEEP))
    scores = torch.randn(2, 3, 5, 5, requires_grad=True)
    compiled(scores).pow(2).sum().backward()
    forward, backward = (_targets(g) for g in graphs)
    assert forward.count(torch.ops.mmcore.masked_softmax.default) == 1
    assert backward.count(torch.ops.mmcore.softmax_backward.default) == 1
    assert torch.ops.aten._softmax.default not in forward + backward
    assert torch.allclose(scores.grad, torch.autograd.grad(_reference(scores * 2.0, KEEP).pow(2).sum(), scores)[0], atol=1e-6)


def test_a_compiled_transformer_trains_with_the_op_on_a_cpu() -> None:
    """What ``compile: true`` traces of a CPU transformer with fast masks: each block's attention
    softmax is the op (forward and backward), never inductor's decomposable ``_softmax``."""
    from mmcore.builtins.encoders import TransformerEncoder
    from mmcore.fastdropout import use_fast_dropout
    from mmcore.types import ModalitySpec

    torch.manual_seed(0)
    encoder = TransformerEncoder(ModalitySpec("s", 3, sequence=True, max_len=7), dim=8, layers=2, heads=2, attn_dropout=0.2)
    assert use_fast_dropout(encoder) > 0
    compiled, graphs = _traced_graphs(encoder.train())
    compiled(torch.randn(4, 7, 3), torch.tensor([7, 3, 5, 2])).sum().backward()
    forward, backward = (_targets(g) for g in graphs)
    assert forward.count(torch.ops.mmcore.masked_softmax.default) == 2  # one per block
    assert backward.count(torch.ops.mmcore.softmax_backward.default) == 2
    assert torch.ops.aten._softmax.default not in forward + backward
