"""mmcore.testing.check_resume: passes on the engine's exact resume, and catches a resume that loses state."""

from __future__ import annotations

import pytest
import torch

from mmcore.testing import check_resume, tiny_recipe


def test_exact_resume_passes_and_keeps_the_stopped_checkpoint(tmp_path):
    check = check_resume(tiny_recipe(tmp_path, "train.epochs=2"), stop_after=3)  # mid-epoch 1 (5 steps an epoch)
    assert check.stopped_state["step"] == 3 and check.stopped.step == 3 and check.resumed.step == 10
    assert check.weights.keys() == check.stopped_weights.keys()
    assert any(not torch.equal(check.weights[k], check.stopped_weights[k]) for k in check.weights)  # trained on
    assert "task_loss" in check.logged()


def test_a_resume_that_drops_the_optimiser_state_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.optim.Adam, "load_state_dict", lambda self, state: None)  # Adam restarts its moments
    with pytest.raises(AssertionError, match="tensors differ from the straight run's"):
        check_resume(tiny_recipe(tmp_path, "train.epochs=2"), stop_after=3)
