"""archbuilder: network architectures as YAML, compiled into Keras 3 models.

The pipeline, one module (or package) per step:

    YAML file --(spec.source, spec.resolve)--> plain data with locations
              --(plan.schema, plan.validate)---> validated pydantic Spec
              --(plan)--------------------------> a graph of primitive layers with static shapes,
                                                  parameter counts and MACs (no TensorFlow)
              --(keras.graph)-------------------> keras.Model
              --(training, evaluate, predict, export)

Everything in `spec` and `plan` imports no TensorFlow, so `validate` and `info` are instant.
"""

__version__ = "0.1.0"

# The Python API (see README "Python"): nothing here imports TensorFlow until a call needs it
# (`build`, `train`, `evaluate`, `predict`, `export`, `load_model`, `plot` of layers).
# The subpackage `archbuilder.export` is imported first (it holds two tuples): importing a
# subpackage sets the package's attribute of its name, which would otherwise replace the function
# `archbuilder.export` the first time any module imports it.
import archbuilder.export  # noqa: E402, F401
from archbuilder.api import (  # noqa: E402
    ExportResult, Predictions, TrainedRun, build, diff, evaluate, export, info, load_model, load_spec, plot, predict,
    train,
)
from archbuilder.errors import SpecError, UserError  # noqa: E402

__all__ = ["build", "diff", "evaluate", "export", "info", "load_model", "load_spec", "plot", "predict", "train",
           "ExportResult", "Predictions", "TrainedRun", "SpecError", "UserError", "__version__"]
