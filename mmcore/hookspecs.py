"""Hook specifications: the plugin author's manual.

A plugin is a module or object with functions decorated by ``mmcore.hookimpl`` whose names are
the hooks below. It is found through an entry point in group ``mmcore``; the entry point's name
is the plugin's name and the namespace of its components, so plugin ``redcore`` registers
``redcore.vib``, ``redcore.relative_advantage`` and so on.

Each ``register_*`` hook receives a ``register`` callback::

    register(name: str, factory: Callable, *, description: str | None = None)

``factory`` is a class or function; its keyword parameters (type hints and defaults) are the
recipe options of the component, except the parameters the framework injects for its kind
(see ``mmcore.components``). Ranges go in the hints too (``Annotated[float, Between(0, 1)]``,
or the aliases ``mmcore.PositiveInt``, ``mmcore.Fraction``, ...), so they are checked before
anything is built and shown by ``mmcore components NAME``; the help of an option is its line in
the docstring's ``Args:`` section. Registering a name twice is an error that names both origins.

Rules checked when a plugin loads (a plugin that breaks one is skipped, with its error):
a hook name must be one of the specs below (``register_imputer`` is rejected with the nearest
name); every component name must start with ``<plugin>.``; a factory's signature must be
inspectable. The component kinds and their hooks are declared once, in
``mmcore.components.KIND_TABLE``; each kind has one ``register_*`` hook here.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "mmcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset factories. A factory returns an object with ``modalities`` (list of
    ``ModalitySpec``), ``task`` (``TaskSpec``) and ``split(name) -> SplitData`` for ``train``,
    ``val`` and ``test``. Never download at run time: read files the user points to.

    Splits are checked once after loading (``mmcore.datacheck.check_splits``): features float32
    and shaped as the specs say, lengths in ``0..max_len``, ids int64 and unique, targets in
    range, no split empty, and no NaN or inf unless the recipe sets ``data.nonfinite: absent``;
    tensors dense and holding values (not sparse, not on ``meta``), and ``unusable``, if the
    dataset sets it, a ``[N, M]`` bool that leaves every row one usable modality.

    Optional, so that ``mmcore validate`` can check modality names, ``min_present``, rates,
    conditions and ``train.select`` before any data is loaded: give the factory a ``describe``
    attribute (a classmethod on a class) taking the same options and returning
    ``(modalities, task)``, the ``ModalitySpec`` list (or just the names, in order) and the
    ``TaskSpec`` (or None). It must be cheap (options or file headers, never tensors). Without
    it, or if it raises (files not there yet), validation skips those checks; the run makes them.
    What it returns must agree with the built dataset: a run warns when it does not (validation
    judged the recipe by it) and the contract suite warns (a ``FutureWarning``: it will fail later).
    The commands that run a recipe here (``mmcore validate``, ``run``, ``resume``) also report
    what it raises as ``DataError`` (or any ``MMCoreError``): bad options, unreadable headers; and
    an option named ``root`` must name an existing file or folder (``mmcore.recipe.machine``).

    Optional, for data whose law is known: a method ``oracle(split, masks)`` taking a
    ``SplitData`` and ``{condition: [N, M] bool presence mask}`` and returning
    ``{condition: {metric: value}}`` -- the Bayes ceiling of each condition on that split, with
    metric names of ``mmcore.metrics`` (``accuracy`` in [0, 1], ``mse`` >= 0, ...) -- or None
    when it has none for these options; an ``oracle_method`` string says how it is computed.
    The engine writes it into ``eval.json`` as ``oracle``, and tables and reports show the gap
    to it. The contract suite checks its shape (``mmcore.testing.check_dataset``)."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register encoder factories ``(spec, dim, **options) -> nn.Module`` whose forward is
    ``(x, lengths) -> [B, dim]``; ``lengths`` is None for vector modalities."""


@hookspec
def register_imputers(register: Register) -> None:
    """Register imputer factories ``(specs, dim, **options) -> nn.Module`` whose forward is
    ``(h [B, M, d], present [B, M]) -> ImputerOutput``.

    The no-leakage rule, precisely: every output (``z`` at present *and* absent positions, and
    every loss term) is a function of the present rows of ``h`` and of ``present`` only. The
    engine zeroes absent rows before the call, but an imputer must not rely on that: one that
    feeds ``h`` whole to a network (MMIN's autoencoder reads the zero-filled concatenation)
    masks it itself, ``torch.where(present[..., None], h, 0)``. The contract suite fills absent
    rows with noise and expects identical outputs. In eval mode a row's outputs must not depend
    on the other rows of the call either: evaluation stacks several conditions' copies of a
    split into one call (``mmcore.engine.evaluate``), so an imputer that borrows from the batch
    would see a row's own copy under another condition. One that uses other samples at
    evaluation keeps them as state (``baselines.neighbours``' bank of training latents); the
    contract suite checks row independence.

    Loss groups (``mmcore.lossgroups``): ``ImputerOutput.losses`` maps a group name to ``[M]``
    per-modality terms; the engine adds ``unimodal`` when ``model.unimodal_heads`` is on. Declare
    the groups on the factory, ``loss_groups = ("recon", "kl")`` or a callable of the recipe
    options (``loss_groups(cycle_weight=2.0, **_)``), so that ``mmcore validate`` can check
    ``balancer.target`` (listing the groups and the target to set); without it the check happens
    once, at the first training step. ``train.modality_dropout`` may hide present modalities
    before the call (``mmcore.engine.dropout``): an imputer sees them as absent."""


@hookspec
def register_fusions(register: Register) -> None:
    """Register fusion-head factories ``(specs, dim, out_dim, **options) -> nn.Module`` whose
    forward is ``(z [B, M, d], present [B, M]) -> [B, out_dim]``."""


@hookspec
def register_balancers(register: Register) -> None:
    """Register balancer factories ``(modalities, **options) -> mmcore.Balancer``. A factory
    that declares a ``missing_rates`` parameter receives the training missing rates.

    The hooks of ``mmcore.Balancer``, in the order of one training step
    (``mmcore.engine.trainer.Trainer.step``), and the methods that use them:

    - ``weights()``: ``[M]`` weights of the ``target`` group's terms (RedCore, inverse rate).
      Return a new tensor after an update, never write into the one returned before (autograd
      holds it for the step's backward).
    - ``extra_loss(view: StepView) -> Tensor | None``: a scalar added to the loss, logged as
      ``balancer_loss`` (PMR's prototype loss). ``view`` has the step's prediction, unimodal
      outputs, completed latents ``z``, encodings ``h``, targets, ``present`` (after modality
      dropout) and ``probe(mask) -> prediction``: the fusion re-run with other modalities masked,
      without gradients and in eval mode (AGM's contribution probes); ``mean_over_ranks`` pools
      what a balancer keeps from this hook so its state agrees on every rank; ``task_rows`` is
      each row's task loss ``[B]`` with its gradient (its mean is the task loss), which with
      ``present`` lets a balancer reweight rows by availability pattern (``baselines.pattern_dro``).
    - ``modulate_gradients(model, stats)``: after backward, before clipping and the optimiser
      step (OGM-GE, MMPareto). With ``"group_grads"`` in ``needs``, ``stats.group_grads[g][i]`` is
      the gradient of group ``g``'s weighted loss (``task``: the fusion head's task loss) for
      each parameter of ``model.encoders[modalities[i]]``, for ``g`` in ``gradient_groups``.
    - ``observe(stats)``: after the optimiser step, detached statistics (RedCore).
    - ``end_epoch(view: EpochView)``: after each validation, before checkpoints are written;
      ``view.val`` holds the validation metrics by condition, ``view.latents()`` computes the
      train split's completed latents (eval mode, no grad; PMR's prototypes), and
      ``view.losses(split)`` the fusion head's and each unimodal head's mean task loss over the
      train or validation split (G-Blending).

    A method that also changes the model before fusion (BALM's feature calibration,
    ``baselines.balm``) declares ``calibration`` on its factory: a callable
    ``(specs, dim, **options) -> nn.Module | None`` that receives the balancer's recipe options
    (take ``**_`` for the ones it ignores). The engine builds it with the model (so ``mmcore
    eval``, ``predict`` and ``export`` rebuild it from the recipe, and its weights live in
    ``model.safetensors``, are trained by the model's optimiser and synchronised like the rest)
    and calls it as ``(h [B, M, d], present [B, M]) -> [B, M, d]`` after the absent rows of ``h``
    are zeroed and before the imputer, in training, evaluation and fusion probes; absent rows of
    its output are zeroed again. Like an imputer it must keep rows independent in eval mode.

    ``needs`` (a frozenset of ``mmcore.components.STEP_NEEDS``) names the optional ``StepStats``
    fields the engine computes for the balancer: ``unimodal_confidence`` (OGM-GE) and
    ``group_grads`` (MMPareto); nothing else is computed. Declaring ``unimodal_confidence`` makes
    ``mmcore validate`` require ``model.unimodal_heads`` and, unless ``task_kinds`` says
    otherwise, a classification task (the confidences are class probabilities). A subclass that predates ``needs`` and
    overrides ``observe`` or ``modulate_gradients`` still gets ``unimodal_confidence``.
    ``target`` must be a loss group of the model when ``target_required`` is true, or when the
    recipe sets a target other than the balancer's default (``mmcore.uniform`` aimed at ``recn``
    would weigh nothing); validation and the first step check it. A balancer defined for
    some tasks only sets ``task_kinds = ("classification",)``; validation checks the dataset's.

    Conventions: ``log_values()`` returns tensors; an ``[M]`` tensor under key ``k`` is logged as
    ``k.<modality>``, a scalar as ``k``. Statistics are pooled over ranks by the engine
    (``mmcore.engine.losses.pool_stats``), and ``group_grads`` averaged, so a balancer never calls
    ``torch.distributed`` and its state agrees on every rank; ``extra_loss`` sees each rank's own
    batch, like the task loss. Keep state on the device (no host sync per step), ``state_dict``
    JSON-able, and ``load_state_dict`` exact so that a resumed run equals an uninterrupted one."""


@hookspec
def register_loggers(register: Register) -> None:
    """Register logger factories ``(**options) -> mmcore.Logger``: where a run's scalars go
    besides ``metrics.jsonl`` (a dashboard, a remote tracker). Nothing is injected; every keyword
    parameter is a recipe option of the ``logging`` list.

    The engine calls a logger on the main rank only: ``open(run_dir, resume_step)`` once (on
    resume ``resume_step`` is the step the run continues from, and anything the logger recorded
    past it must be dropped), ``log_step(step, scalars)`` at every logging step,
    ``log_epoch(epoch, step, scalars)`` after every validation, and ``close()`` once, also when
    training fails. Scalars are plain floats already read from the device; a logger never
    touches tensors. A logger whose backend is an optional dependency imports it in ``open``
    and raises ``mmcore.MMCoreError`` naming the extra to install when it is missing."""


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``mmcore`` typer application (``app.command()(fn)``)."""
