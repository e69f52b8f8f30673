"""Makes a stop asked on one worker of a multi-worker run the stop of every worker, at the same batch.

Ctrl-C or SIGTERM (what Kubernetes and Slurm send) reaches one process; the others would run on
into the next step's collective and wait for a peer that has left. So after every batch the
workers all-reduce which of SIGINT and SIGTERM each has received (a sum of two flags: all-reduce
knows only sums and means); all see the same sums after the same batch and stop there together,
keeping the run folder's last finished epoch, and all exit with the same code, 128 + the signal
(SIGTERM's where any worker got one, so a job being shut down reads as such). The signal handler
only records the request: were it to stop its worker itself, a signal landing between this
agreement and the StopGuard would stop that worker one batch before the others.
"""

from __future__ import annotations

import signal
import sys

import keras

from archbuilder.training.callbacks.session import Session

SIGNALS = (signal.SIGINT, signal.SIGTERM)  # where several workers got different ones, SIGTERM wins


class AgreedStop(keras.callbacks.Callback):
    def __init__(self, session: Session, strategy, say):
        super().__init__()
        import tensorflow as tf

        self.session, self.say = session, say or (lambda line: print(line, file=sys.stderr, flush=True))
        session.stop_needs_agreement = True  # a signal now only asks; this callback decides

        def total(flags):
            # made on the replica's device: an argument from outside has no destinations across workers
            return tf.distribute.get_replica_context().all_reduce("SUM", tf.identity(flags))

        @tf.function(input_signature=[tf.TensorSpec([len(SIGNALS)], tf.float32)])
        def agree(flags):
            return strategy.experimental_local_results(strategy.run(total, args=(flags,)))[0]

        self.agree = agree

    def on_train_batch_end(self, batch, logs=None):
        session = self.session
        flags = [float(session.stop_signal == signum) for signum in SIGNALS]
        received = [signum for signum, count in zip(SIGNALS, self.agree(flags).numpy()) if count > 0]
        agreed = received[-1] if received else 0
        if agreed and not session.stop_signal:
            self.say(f"another worker was interrupted ({_name(agreed)}): stopping after this batch with it")
        if agreed:
            session.stop_signal, session.stop_requested = agreed, True


def _name(signum: int) -> str:
    return signal.Signals(signum).name
