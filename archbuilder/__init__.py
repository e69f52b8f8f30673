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

# The Python API (see README "Python"): nothing here imports TensorFlow until `build` is called.
from archbuilder.api import build, info, load_spec  # noqa: E402
from archbuilder.errors import SpecError, UserError  # noqa: E402

__all__ = ["build", "info", "load_spec", "SpecError", "UserError", "__version__"]
