"""The fused kernels' XLA compiles, started on the idle core while the training step is traced.

The fused GELU and layer norm (fused_gelu.py, fused_layer_norm.py) are XLA-compiled functions,
and XLA compiles each one for each input shape the first time it runs: inside the first training
step, one after the other, on the thread that runs the step. ConvNeXt-T at 224x224 meets 23 of them
there, ~2 s of a ~10 s first-step extra (their compile times in TensorFlow's log,
`TF_CPP_VMODULE=device_compiler=2`); ViT-B/16 five. Before that step Python traces it (~4 s for
ConvNeXt-T) and grappler optimizes it (~2 s), each on one core: the other core is idle.

`CompileAhead` uses it. While it is open, every call of an `XlaKernel` that is being traced (the
training step's forward pass, and its gradient) sends its concrete function and its inputs'
shapes, the batch dimension made the training batch's size, to a thread that runs the function
once on inputs of those shapes. That compiles it, into the same cache the step reads (TensorFlow's
per-device XLA compilation cache, keyed by the concrete function's name and its inputs' shapes),
so the first step finds it compiled. Only a call from a graph shares that cache (an eager call
of the same concrete function compiles into another), hence the small `tf.function` around them.
Nothing changes what the step computes: the same concrete functions run, compiled once instead
of when first met; if the thread has not reached one yet, the step compiles it as before.

What it saves depends on the cores left idle. On 2 cores the second one is not idle during the
trace: tf.data reads batches ahead there (~4.7 CPU seconds in ConvNeXt-T's first-step window), so
the compiles take longer (3.6 s instead of 2.0) and the first step ended a median 0.4 s sooner over
5 alternating pairs (bench/first_step_passes.py --against no-compile-ahead, bench/RESULTS.md); its
spread narrowed (9.1-11.1 s against 8.3-13.8 s). With more cores the whole ~2 s is off the step.
"""

from __future__ import annotations

import functools
import queue
import threading

import tensorflow as tf

_open: CompileAhead | None = None  # the one open CompileAhead (the training step is traced on one thread)


class XlaKernel:
    """A function compiled by XLA for each input shape (`tf.function(jit_compile=True)`), whose
    traced calls an open CompileAhead compiles ahead. Called with tensors only."""

    def __init__(self, python_function):
        self.function = tf.function(python_function, jit_compile=True, autograph=False, reduce_retracing=True)
        functools.update_wrapper(self, python_function)

    def __call__(self, *tensors):
        ahead = _open
        if ahead is None or tf.executing_eagerly():
            return self.function(*tensors)
        concrete = self.function.get_concrete_function(*tensors)  # the one the call below runs
        ahead.submit(concrete, tensors)
        return concrete(*tensors)


class CompileAhead:
    """Compiles the XlaKernels traced while it is open (see the module's docstring), for inputs whose
    first dimension, where unknown, is `batch_size`. A context manager; `close` may come earlier."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.compiled = 0  # concrete functions run (and so compiled) by the thread
        self.failed: Exception | None = None  # the thread's first error: it stops there; the step compiles the rest
        self._seen: set = set()
        self._pending: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="archbuilder-compile-ahead", daemon=True)

    def __enter__(self) -> CompileAhead:
        global _open
        if _open is not None:
            raise RuntimeError("a CompileAhead is already open")
        _open = self
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Take no more functions, and wait for the one being compiled (at most one compile: the
        rest is left to the step). Native code must not outlive the call that owns it."""
        global _open
        if _open is self:
            _open = None
            self._pending.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, concrete, tensors) -> None:
        shapes = _runtime_shapes(tensors, self.batch_size)
        if shapes is None or (key := (concrete.name, shapes)) in self._seen:
            return
        self._seen.add(key)
        self._pending.put((concrete, shapes, tuple(t.dtype for t in tensors)))

    def _run(self) -> None:
        while (first := self._pending.get()) is not None:
            calls, ended = [first], False
            while not self._pending.empty():  # the ones traced meanwhile: one graph for them all
                item = self._pending.get()
                if item is None:
                    ended = True
                    break
                calls.append(item)
            if self.failed is None:
                try:
                    _run_once(calls)
                    self.compiled += len(calls)
                except Exception as error:  # noqa: BLE001 - the step compiles (and so reports) it itself
                    self.failed = error
            if ended:
                return


def _runtime_shapes(tensors, batch_size: int) -> tuple | None:
    """The tensors' shapes with an unknown first dimension made `batch_size`; None where another
    dimension is unknown (its size at run time cannot be told here)."""
    shapes = []
    for tensor in tensors:
        if tensor.shape.rank is None:
            return None
        dims = tensor.shape.as_list()
        if dims and dims[0] is None:
            dims[0] = batch_size
        if None in dims:
            return None
        shapes.append(tuple(dims))
    return tuple(shapes)


def _run_once(calls) -> None:
    """Run each concrete function once, from a graph, on inputs of ones of its shapes."""
    inputs = [[tf.ones(shape, dtype) for shape, dtype in zip(shapes, dtypes)] for _, shapes, dtypes in calls]

    @tf.function(autograph=False)
    def run(inputs):  # outputs returned: a call whose outputs nothing uses would be pruned
        return [concrete(*tensors) for (concrete, _, _), tensors in zip(calls, inputs)]

    run(inputs)
