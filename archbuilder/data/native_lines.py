"""libjpeg's own lines kept off the user's terminal: a damaged JPEG makes the libjpeg inside
TensorFlow print e.g. "Corrupt JPEG data: premature end of data segment" or "Improper call to
JPEG library in state 201" before our one-line message names the file.

Where they come from: TensorFlow's JPEG decoder (core/lib/jpeg/jpeg_mem.cc) keeps libjpeg's
default `output_message`, which `fprintf`s every error and the first warning of each decode to
the C `stderr`, i.e. file descriptor 2, from whichever tf.data thread decodes; TensorFlow's log
level does not apply (it only silences them in its fuzzing builds). Only file descriptor 2 itself
can be filtered, so in a command-line process (`enable()`, called by `cli.run`) the first image
decode (`filter_native_stderr()`) does this:

- Python's own `sys.stderr` (our messages, warnings, tracebacks) is pointed straight at the
  terminal, a duplicate of the original descriptor 2: it never passes the filter.
- Descriptor 2, which native code writes to, becomes a pipe into a small child process (this
  file, run with `python -S`) that copies every line to the terminal except those that are
  libjpeg's messages (LIBJPEG_LINE: the text of libjpeg's message table, jerror.h). A native
  error printed just before a crash is not lost: the child lives on until the pipe closes.
  It runs in its own session, so a Ctrl-C meant for `train` does not end it first.

ARCHBUILDER_TF_LOGS=1 shows everything, as for TensorFlow's start-up lines (runtime.py).
Standard library only: the child runs this file without site-packages.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import threading

# The start of each message of libjpeg(-turbo)'s table (jerror.h) that decoding a file can print:
# corrupt-data warnings, and the errors that end a decode (bad structure, tables, markers, state).
LIBJPEG_LINE = re.compile(
    rb"(Corrupt JPEG data: |Premature end of (JPEG|input) file|Improper call to JPEG library in state \d+"
    rb"|Invalid JPEG file structure: |Not a JPEG file: starts with 0x|Bogus |(Huffman|Quantization|Arithmetic) "
    rb"table 0x[0-9a-f]+ was not defined|Unsupported marker type 0x|Unsupported JPEG (process|data precision)"
    rb"|Input file read error|Empty input file|Empty JPEG image|Invalid SOS parameters for sequential JPEG"
    rb"|Inconsistent progression sequence for component |Invalid (progressive|lossless) parameters "
    rb"|Invalid component ID \d+ in SOS|Warning: unknown JFIF revision number |Unknown Adobe color transform code "
    rb"|Didn't expect more than one scan|JPEG datastream contains no image|Sampling factors too large for "
    rb"interleaved scan|Maximum supported image dimension is |DCT coefficient out of range|Huffman code size table "
    rb"overflow|Missing Huffman code table entry|Too many color components: |Component index \d+: mismatching "
    rb"sampling ratio)"
)

_state = {"enabled": False, "installed": False}
_lock = threading.Lock()


def enable() -> None:
    """Let `filter_native_stderr` rearrange descriptor 2: this process is a command's own (not a
    notebook's or a test runner's, whose descriptors are theirs)."""
    _state["enabled"] = os.environ.get("ARCHBUILDER_TF_LOGS") != "1"


def filter_native_stderr() -> None:
    """Route native writes to descriptor 2 through the libjpeg filter, once per process (a no-op
    unless `enable()` was called)."""
    with _lock:
        if not _state["enabled"] or _state["installed"]:
            return
        _state["installed"] = True
        _install()


def _install() -> None:
    sys.stderr.flush()
    terminal = os.dup(2)
    read, write = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)], stdin=read, stdout=terminal,
                                 stderr=terminal, start_new_session=True, close_fds=True)
    except OSError:  # no filter, then: the lines show, nothing else changes
        for fd in (terminal, read, write):
            os.close(fd)
        return
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    old = sys.stderr
    sys.stderr = open(terminal, "w", encoding=old.encoding, errors=old.errors, buffering=1, closefd=False)

    def restore() -> None:  # at exit: the child prints what is left before the shell's prompt
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end here
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:  # a descendant still holds the pipe; it prints on its own
            pass

    atexit.register(restore)


def copy_lines(source, target) -> None:
    """Every line of `source` to `target` (binary files), less libjpeg's; flushed line by line."""
    for line in iter(source.readline, b""):
        if not LIBJPEG_LINE.match(line):
            target.write(line)
            target.flush()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ends when the pipe closes, not before
    copy_lines(sys.stdin.buffer, sys.stdout.buffer)
