"""YAML to a checked spec: reading files, extends and --set, the pydantic schema, validation.

Nothing here imports TensorFlow.
"""
