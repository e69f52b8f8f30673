"""With --skip-bad-images, a streamed training file that failed to decode in an epoch is left out
of its batch (data.stream); this counts such files in the epoch's log line and names them."""

from __future__ import annotations

import keras


class SkippedImages(keras.callbacks.Callback):
    def __init__(self, sources, say):
        """`sources`: the training set's stream.ImageFiles (whose `bad` notes the skipped files)."""
        super().__init__()
        self.sources, self.say = sources, say

    def on_epoch_end(self, epoch, logs=None):
        skipped = [name for source in self.sources for name in source.bad.skipped_in(epoch)]
        if not skipped:
            return
        if logs is not None:  # Keras's progress logger prints the logs after this callback
            logs["skipped_images"] = len(skipped)
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        self.say(f"epoch {epoch + 1}: skipped {len(skipped)} image{'' if len(skipped) == 1 else 's'} "
                 f"that failed to decode (--skip-bad-images): {shown}")
