"""What `train` adds for training images streamed from their files (data.stream, `--cache none`
or `disk`): a line saying so, the per-epoch count of files skipped under --skip-bad-images, and
the one-line stop naming a file that failed to decode."""

from __future__ import annotations

from archbuilder.data.stream import stop_message, streamed_sources
from archbuilder.errors import Remedy, UserError


def reading_line(data) -> str | None:
    """A line for a run whose training images are streamed; None when they are held in memory."""
    for source in streamed_sources(data.train.x):
        if source.bad.cache_folder is not None:
            return f"images: streamed from the decoded-image cache {source.bad.cache_folder} (--cache disk)"
        return "images: streamed from their files, decoded and resized as each batch is needed (--cache none)"
    return None


def skipped_images(data, say) -> list:
    """The callback that counts skipped files in each epoch's log line, where files may be skipped."""
    streamed = streamed_sources(data.train.x)
    if not any(source.skip_bad for source in streamed):
        return []
    from archbuilder.training.callbacks.skipped_images import SkippedImages

    return [SkippedImages(streamed, say)]


def without_skipped(images):
    """`images` (a data.hdf5.LabelledImages) less the streamed files that training skipped as bad
    (--skip-bad-images): an evaluation must not stop at a file that training left out."""
    import numpy as np

    for source in streamed_sources(images.x):
        if source.bad.ever_skipped:
            keep = np.flatnonzero(~np.isin(source.paths, list(source.bad.ever_skipped)))
            return images.subset(keep)
    return images


def stop_at_bad_file(error: Exception, data, run, state) -> None:
    """Raise the one-line UserError for a streamed image that failed to decode, if that is what
    stopped `error`'s pipeline. The run folder keeps its last finished epoch, so the run resumes
    once the file is fixed or removed."""
    import tensorflow as tf

    if not isinstance(error, tf.errors.OpError):
        return
    held = (data.train, data.validation, data.test)
    message = stop_message(streamed_sources(*(images.x for images in held if images is not None)))
    if message is None:
        return
    raise UserError(
        f"{message}; training stopped. {run.root} keeps epoch {state.epochs_done}: ",
        Remedy("fix or remove the file (or add {skip_bad_images}) and continue with: {call}",
               (("resume", str(run.root)),), call="train"),
    ) from None
