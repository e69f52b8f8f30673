"""archbuilder: network architectures as YAML, compiled into Keras 3 models.

The pipeline, one module (or package) per step:

    YAML file --(source, resolve)--> plain data with locations
              --(spec)-------------> validated pydantic Spec
              --(plan)-------------> a graph of primitive layers with static shapes,
                                     parameter counts and MACs (no TensorFlow)
              --(keras_graph)------> keras.Model
              --(train, evaluate, predict, export)

Everything up to and including `plan` imports no TensorFlow, so `validate` and `info` are instant.
"""

__version__ = "0.1.0"
