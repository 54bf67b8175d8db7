"""The JSON half of a checkpoint: where training is, and what it has seen so far.

Together with the tensors (model, optimiser, RNG) this is everything a resumed run needs to
continue exactly as if it had never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmcore.errors import MMCoreError


@dataclass
class TrainState:
    """Progress of one run; round-trips through JSON exactly (floats as JSON numbers)."""

    step: int = 0  # optimisation steps done
    epoch: int = 0  # epochs completed (validation done) when the checkpoint was written
    best_value: float | None = None  # selection value of the best epoch so far
    best_epoch: int | None = None  # 1-based epoch that gave ``best_value``
    log_count: int = 0  # steps accumulated in ``log_sums`` since the last logging step
    log_sums: dict[str, Any] = field(default_factory=dict)  # key -> float or [M] floats, un-averaged
    epoch_loss_sum: float = 0.0  # total loss over the epoch so far (divergence check at epoch end)
    balancer: dict[str, Any] = field(default_factory=dict)  # Balancer.state_dict()
    rank_log_sums: list[dict[str, Any]] | None = None  # under DDP: every rank's own log_sums, by rank

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> "TrainState":
        """Read what ``to_json`` wrote; ``source`` names the file in the error of a bad shape."""
        if not isinstance(data, dict):
            raise MMCoreError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        missing = sorted({"step", "epoch", "balancer"} - set(data))
        if missing:
            raise MMCoreError(f"{source}: not a training state (lacks {', '.join(missing)})")
        state = cls(**{k: v for k, v in data.items() if k in known})
        checks = {
            "step": isinstance(state.step, int) and state.step >= 0,
            "epoch": isinstance(state.epoch, int) and state.epoch >= 0,
            "log_count": isinstance(state.log_count, int) and state.log_count >= 0,
            "log_sums": isinstance(state.log_sums, dict),
            "balancer": isinstance(state.balancer, dict),
            "rank_log_sums": state.rank_log_sums is None or isinstance(state.rank_log_sums, list),
            "best_value": state.best_value is None or isinstance(state.best_value, (int, float)),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise MMCoreError(f"{source}: invalid training state: bad value for {', '.join(bad)}")
        return state
