"""The spec language's vocabulary, below every other part: reading YAML files with locations
(source), `extends`, `imports` and `--set` (resolve), the strict base model, the field types that
accept expressions and the closed expression language (fields, expressions), block parameters,
block calls and stages (params, blocks), initializers and training settings.

The whole spec's model, which composes the primitive layers, is archbuilder/plan/schema.py; the
front door from a file to a checked spec is archbuilder/plan/validate.py. Nothing here imports
archbuilder.layers, plan or keras, or TensorFlow (tests/test_import_order.py).
"""
