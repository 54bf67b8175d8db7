"""The core's generic components, registered as the default plugin ``mmcore``.

They go through the same hooks as any other plugin, so the registry treats them alike.
"""

from __future__ import annotations

from mmcore.hookspecs import Register, hookimpl


@hookimpl
def register_datasets(register: Register) -> None:
    from mmcore.builtins.synthetic import Synthetic

    register("mmcore.synthetic", Synthetic)


@hookimpl
def register_encoders(register: Register) -> None:
    from mmcore.builtins import recurrent, textcnn
    from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder

    register("mmcore.mlp", MLPEncoder)
    register("mmcore.transformer", TransformerEncoder)
    register("mmcore.lstm", recurrent.LSTMEncoder)
    register("mmcore.textcnn", textcnn.TextCNN)


@hookimpl
def register_imputers(register: Register) -> None:
    from mmcore.builtins.imputers import ZeroImputer

    register("mmcore.zero", ZeroImputer)


@hookimpl
def register_fusions(register: Register) -> None:
    from mmcore.builtins.fusion import ConcatFusion

    register("mmcore.concat", ConcatFusion)


@hookimpl
def register_balancers(register: Register) -> None:
    from mmcore.builtins.balancers import Uniform

    register("mmcore.uniform", Uniform)


@hookimpl
def register_loggers(register: Register) -> None:
    from mmcore.builtins.loggers import ConsoleLogger, JsonlLogger, TensorBoardLogger
    from mmcore.builtins.trackers import MlflowLogger, WandbLogger

    register("mmcore.jsonl", JsonlLogger, description="metrics.jsonl, the run's record")
    register("mmcore.console", ConsoleLogger, description="the progress bar")
    register("mmcore.tensorboard", TensorBoardLogger, description="TensorBoard event files (extra 'tensorboard')")
    register("mmcore.mlflow", MlflowLogger, description="an MLflow run, local SQLite store by default (extra 'mlflow')")
    register("mmcore.wandb", WandbLogger, description="a Weights & Biases run, offline by default (extra 'wandb')")
