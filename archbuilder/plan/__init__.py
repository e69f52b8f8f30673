"""The plan: blocks expanded into primitive layers with static shapes, parameters and MACs.

Nothing here imports TensorFlow.
"""
