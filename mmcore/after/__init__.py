"""After training: evaluate a saved run under any protocol (``mmcore eval``), robustness curves
(``--curve``), and predictions on new inputs with absent modalities (``mmcore predict``).

Both open the run through ``mmcore.after.runs.open_run``, which builds the engine's ``Session``
from the run's own recipe and loads the verified checkpoint, so they evaluate exactly what
training built.
"""

from mmcore.after.evaluation import EvalResult, evaluate_run
from mmcore.after.predict import predict_file

__all__ = ["EvalResult", "evaluate_run", "predict_file"]
