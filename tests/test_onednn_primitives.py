"""bench/onednn_primitives.py reads oneDNN's verbose log as TensorFlow here writes it: the logged
steps only (not the warm-up), each convolution by pass and shape without its padding, and the
library's version and threading runtime."""

from __future__ import annotations

import os
import subprocess
import sys

from train_support import REPO

from bench.onednn_primitives import onednn_build, primitive_times

# Two logged steps of one 3x3 SAME convolution, after the bench's warm-up steps, in the bench's
# own markers; oneDNN is on as archbuilder's runtime sets it.
_STEPS = """
import sys
sys.path.insert(0, ".")
from archbuilder.runtime import configure_tensorflow_environment
configure_tensorflow_environment()
import tensorflow as tf
from bench.onednn_primitives import _marked_steps
x, kernel = tf.random.normal([2, 8, 8, 3]), tf.random.normal([3, 3, 3, 4])
_marked_steps(lambda: tf.nn.conv2d(x, kernel, 1, "SAME").numpy(), 2)
"""


def test_a_real_tensorflow_log_is_read_step_by_step():
    result = subprocess.run([sys.executable, "-c", _STEPS], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ONEDNN_VERBOSE": "1", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    kinds, convolutions = primitive_times(result.stdout, steps=2)
    # padding (ph1, pw1) removed from oneDNN's descriptor; one call a step: the warm-up's three
    # calls before the start marker are not counted (with them: 2.5 a step)
    shape = "mb2_ic3oc4_ih8oh8kh3sh1dh0_iw8ow8kw3sw1dw0"
    assert list(convolutions) == [("forward_training", shape)]
    median, calls, implementations = convolutions[("forward_training", shape)]
    assert calls == 1 and median > 0 and len(implementations) == 1
    assert kinds["convolution"] > 0
    build = onednn_build(result.stdout)
    assert build.startswith("oneDNN v") and "threadpool runtime" in build  # TensorFlow's build of oneDNN


def test_a_network_without_a_timm_name_is_refused():
    result = subprocess.run([sys.executable, "bench/onednn_primitives.py", "lenet"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "lenet: no timm name" in result.stderr and "Traceback" not in result.stderr
