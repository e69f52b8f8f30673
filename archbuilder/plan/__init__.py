"""The network: the whole spec's model (schema: primitive layers and block types composed), its
checks (validate, the front door from a file to a checked spec; blocks), and the plan: blocks
expanded into primitive layers with static shapes, parameters and MACs (expand, graph).

Nothing here imports TensorFlow (tests/test_import_order.py).
"""
