"""Where training is and what it has seen so far: the trainer's live state and its JSON half.

Together with the tensors (model, optimiser, RNG) a checkpoint's ``state.json`` is everything a
resumed run needs to continue exactly as if it had never stopped. ``TrainState`` is the object the
trainer updates in place (``state.step += 1``); ``snapshot`` turns it into plain values on every
rank (the only place that needs collectives) and ``to_json``/``from_json`` round-trip those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mmcore.errors import MMCoreError

if TYPE_CHECKING:
    from mmcore.engine.runtime import Runtime


class RunningSums:
    """Per-key sums of step values since the last reset, and how many steps they hold.

    While training the sums are float32 tensors on the device (adding one never syncs the host);
    read from a checkpoint they are plain floats or lists until ``bind`` puts them back on the
    device. Under data parallelism each rank keeps its own partial sums: ``gathered`` stores every
    rank's (``by_rank``) besides their mean, so a resume with the same number of processes
    continues each rank's sums exactly, and one with another number starts every rank from the mean.
    """

    def __init__(self, sums: dict[str, Any] | None = None, count: int = 0, by_rank: list[dict[str, Any]] | None = None):
        self.sums: dict[str, Any] = dict(sums or {})
        self.count = count
        self.by_rank = by_rank

    def bind(self, rt: "Runtime") -> None:
        """Plain values from a checkpoint → this rank's tensors on ``rt.device``."""
        own = self.by_rank[rt.rank] if self.by_rank is not None and len(self.by_rank) == rt.world_size else self.sums
        self.sums = {k: torch.tensor(v, device=rt.device, dtype=torch.float32) for k, v in own.items()}
        self.by_rank = None

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()

    def means(self, rt: "Runtime") -> dict[str, torch.Tensor]:
        """Mean per step since the last reset, averaged over ranks (still on the device)."""
        return {k: rt.all_reduce_mean(v) / self.count for k, v in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def gathered(self, rt: "Runtime") -> "RunningSums":
        """Plain values: the mean over ranks, and under DDP every rank's own sums (collectives)."""
        own = {k: v.tolist() for k, v in self.sums.items()}
        mean = {k: rt.all_reduce_mean(v).tolist() for k, v in self.sums.items()}
        return RunningSums(mean, self.count, rt.all_gather_object(own) if rt.distributed else None)


@dataclass
class TrainState:
    """Progress of one run: live while training, plain values after ``snapshot`` or ``from_json``."""

    step: int = 0  # optimisation steps done
    epoch: int = 0  # epochs completed (validation done)
    best_value: float | None = None  # selection value of the best epoch so far
    best_epoch: int | None = None  # 1-based epoch that gave ``best_value``
    balancer: dict[str, Any] = field(default_factory=dict)  # Balancer.state_dict()
    log: RunningSums = field(default_factory=RunningSums)  # loss terms since the last logging step
    epoch_loss: Any = 0.0  # total loss over the epoch so far (divergence check at epoch end): a tensor while live

    def bind(self, rt: "Runtime") -> None:
        """Make a fresh or restored state live on ``rt``'s device."""
        self.log.bind(rt)
        self.epoch_loss = torch.tensor(float(self.epoch_loss), device=rt.device)

    def snapshot(self, rt: "Runtime", balancer: dict[str, Any]) -> "TrainState":
        """Plain values for a checkpoint; every rank calls it (it gathers over ranks)."""
        log = self.log.gathered(rt)
        return TrainState(
            self.step, self.epoch, self.best_value, self.best_epoch, balancer, log, float(rt.all_reduce_mean(self.epoch_loss))
        )

    def to_json(self) -> dict[str, Any]:
        """``state.json``'s keys (unchanged since engine v2, so older checkpoints still resume)."""
        return {
            "step": self.step, "epoch": self.epoch, "best_value": self.best_value, "best_epoch": self.best_epoch,
            "log_count": self.log.count, "log_sums": self.log.sums, "epoch_loss_sum": float(self.epoch_loss),
            "balancer": self.balancer, "rank_log_sums": self.log.by_rank,
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> "TrainState":
        """Read what ``to_json`` wrote; ``source`` names the file in the error of a bad shape."""
        if not isinstance(data, dict):
            raise MMCoreError(f"{source}: expected a JSON object, got {type(data).__name__}")
        missing = sorted({"step", "epoch", "balancer"} - set(data))
        if missing:
            raise MMCoreError(f"{source}: not a training state (lacks {', '.join(missing)})")
        get = data.get
        # key -> (valid, what was expected); bool is excluded where JSON's true would pass as int 1
        checks = {
            "step": (_count(get("step")), "an integer >= 0"),
            "epoch": (_count(get("epoch")), "an integer >= 0"),
            "log_count": (_count(get("log_count", 0)) and (not _count(get("step")) or get("log_count", 0) <= get("step")),
                          "an integer from 0 to 'step'"),
            "log_sums": (isinstance(get("log_sums", {}), dict) and all(map(_numbers, get("log_sums", {}).values())),
                         "an object of numbers or lists of numbers"),
            "balancer": (isinstance(get("balancer"), dict), "an object"),
            "rank_log_sums": (get("rank_log_sums") is None or isinstance(get("rank_log_sums"), list), "null or a list"),
            "best_value": (get("best_value") is None or _number(get("best_value")), "null or a number"),
            "best_epoch": (get("best_epoch") is None or (_count(get("best_epoch")) and get("best_epoch") >= 1), "null or an integer >= 1"),
            "epoch_loss_sum": (_number(get("epoch_loss_sum", 0.0)), "a number"),
        }
        bad = [f"'{k}' is {_short(get(k))}, expected {expected}" for k, (ok, expected) in checks.items() if not ok]
        if bad:
            raise MMCoreError(f"{source}: invalid training state: {'; '.join(bad)}")
        log = RunningSums(get("log_sums", {}), get("log_count", 0), get("rank_log_sums"))
        return cls(data["step"], data["epoch"], get("best_value"), get("best_epoch"), data["balancer"], log, get("epoch_loss_sum", 0.0))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """A value for a one-line error: a tampered key can hold a whole document."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(value: Any) -> bool:
    """A running sum: a number, or a list of them (one per modality)."""
    return _number(value) or (isinstance(value, list) and all(map(_number, value)))
