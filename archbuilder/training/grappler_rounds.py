"""TensorFlow's graph optimizer run once over the training graphs instead of twice and again.

Before a traced function's first call, TensorFlow optimizes its graph with grappler. By default
every pass runs two rounds (RewriterConfig.meta_optimizer_iterations: DEFAULT is TWO), then the
graph goes through grappler's MLIR optimizer ("tfg"), whose default pipelines sort the graph,
infer shapes and sink ops into conditional branches. On every training step of the networks in
architectures/imagenet/ the second round and tfg change no computation: the optimized graphs
hold the same ops (a second round only reorders the operands of commutative ops, merges duplicate
constants and renumbers shape annotations), and the step's loss and every variable after it are
the same bit for bit (bench/grappler_rounds.py checks each network). They cost about half of grappler's time: for ResNet-50's training step 2.5 s against
1.3 s, at the first step (and again at the first prediction; bench/RESULTS.md).

Neither setting has a public switch (tf.config.optimizer.set_experimental_options knows neither),
but both are fields of the ConfigProto that a thread's tf.function calls carry, read when a
function is instantiated (its `config_proto` attribute, also baked into the calls traced inside
another function). `one_grappler_round` sets them for the calls made in its scope, from the
current settings, and puts the thread's options back after: enter it before anything is traced
or called whose instantiation should share it (a function called under other options is
instantiated, and optimized, again).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context


def set_train_rewrites(rewrite: rewriter_config_pb2.RewriterConfig) -> None:
    """Grappler's options as `train` runs it (above): one round, no tfg. (The memory optimizer at its
    scheduling level was tried: 0.1-0.4 s less grappler for ResNet-152, its optimized graph the same
    bytes as the default's (EfficientNet-B0's too; every zoo file's the same ops and numbers), so its
    slower whole runs were the VM's swing; not kept, since that level's scheduling pass rewrites
    sums of more than two tensors (AddN) in other networks' graphs. bench/RESULTS.md, nineteenth
    and twentieth sessions.)"""
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    rewrite.disable_tfg_optimizer = True


@contextlib.contextmanager
def one_grappler_round() -> Iterator[None]:
    """Grappler's passes once and no tfg round for this thread's tf.function calls in the scope."""
    eager = context.context()
    saved = eager.function_call_options
    config = config_pb2.ConfigProto()
    config.ParseFromString(saved.config_proto_serialized)
    set_train_rewrites(config.graph_options.rewrite_options)
    eager.function_call_options = context.FunctionCallOptions(executor_type=saved.executor_type, config_proto=config)
    try:
        yield
    finally:
        eager.function_call_options = saved
