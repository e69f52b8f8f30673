"""Native libraries' false alarms kept off a command's terminal: lines printed straight to file
descriptor 2 that say nothing wrong happened to the user's run.

- libjpeg's own lines about a damaged JPEG, e.g. "Corrupt JPEG data: premature end of data
  segment" or "Improper call to JPEG library in state 201", printed before our one-line message
  names the file. TensorFlow's JPEG decoder (core/lib/jpeg/jpeg_mem.cc) keeps libjpeg's default
  `output_message`, which `fprintf`s every error and the first warning of each decode to the C
  `stderr`, from whichever tf.data thread decodes; TensorFlow's log level does not apply (it only
  silences them in its fuzzing builds). Also TensorFlow's own line on a JPEG cut short
  ("jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 0/50").
- TensorFlow 2.21's lines on loading an entry of its persistent XLA cache (xla_cache.py), three
  per entry, logged at ERROR level: "Error parsing text-format tensorflow.XlaSerializedCacheEntry"
  (its reader tries the text format before the binary one, ReadTextOrBinaryProto, and the text
  parser logs its failure), and on CPUs whose LLVM tuning adds `+prefer-no-gather` and
  `+prefer-no-scatter` to the compile features (the Zen 4 here), "Target machine feature
  +prefer-no-gather is not supported on the host machine ... could lead to execution errors such
  as SIGILL" (cpu_aot_loader.cc compares the compile features with the host's ISA flags; these two
  are tuning preferences, not instructions, and XLA's newer loader skips `prefer-` and `fast-`
  features). The entry is loaded and runs either way; a loaded entry is always one this CPU
  compiled (the cache's machine key). A mismatch of a real instruction set (+avx512f, ...) still
  shows.

Only file descriptor 2 itself can be filtered, so in a command-line process (`enable()`, called by
`cli.run`) `filter_native_stderr()` (at the first image decode, or before TensorFlow is imported
where the XLA cache is on) does this:

- Python's own `sys.stderr` (our messages, warnings, tracebacks) is pointed straight at the
  terminal, a duplicate of the original descriptor 2: it never passes the filter.
- Descriptor 2, which native code writes to, becomes a pipe into a small child process (this
  file, run with `python -S`) that copies every line to the terminal except those above
  (QUIET_LINES). A native error printed just before a crash is not lost: the child lives on
  until the pipe closes. It runs in its own session, so a Ctrl-C meant for `train` does not end
  it first.

In any other process (a notebook, a test runner, a user's script) descriptor 2 is not ours and is
left alone. ARCHBUILDER_TF_LOGS=1 shows everything, as for TensorFlow's start-up lines (runtime.py).
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
# TensorFlow's (absl's) prefix, "E0000 00:00:1796614408.620642   25993 " or "E1207 03:33:28.620642 25993 ",
# then the two XLA-cache lines above: the text-format attempt on a cache entry only, and the
# tuning features only.
XLA_CACHE_LINE = re.compile(
    rb"E\d{4} [\d:.]+ +\d+ (text_format\.cc:\d+\] Error parsing text-format tensorflow\.XlaSerializedCacheEntry: "
    rb"|cpu_aot_loader\.cc:\d+\] Loading XLA:CPU AOT result\. Target machine feature \+(prefer|fast)-[\w-]+ is not +"
    rb"supported on the host machine\.)"
)
# TensorFlow's own line on a JPEG cut short (jpeg_mem.cc logs it at ERROR level as it stops), in
# absl's prefix as above: "E0000 ... jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 0/50".
TF_JPEG_LINE = re.compile(rb"E\d{4} [\d:.]+ +\d+ jpeg_mem\.cc:\d+\] Premature end of JPEG data\. Stopped at line \d+/\d+")
QUIET_LINES = (LIBJPEG_LINE, XLA_CACHE_LINE, TF_JPEG_LINE)

_state = {"command": False, "installed": False}
_lock = threading.Lock()


def enable() -> None:
    """Let `filter_native_stderr` rearrange descriptor 2: this process is a command's own (not a
    notebook's or a test runner's, whose descriptors are theirs)."""
    _state["command"] = True


def in_command() -> bool:
    """Whether this process is a command's own (`enable()` was called)."""
    return _state["command"]


def filter_native_stderr() -> None:
    """Route native writes to descriptor 2 through the filter, once per process (a no-op unless
    `enable()` was called, or with ARCHBUILDER_TF_LOGS=1)."""
    with _lock:
        if not _state["command"] or _state["installed"] or os.environ.get("ARCHBUILDER_TF_LOGS") == "1":
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
    """Every line of `source` to `target` (binary files), less QUIET_LINES; flushed line by line."""
    for line in iter(source.readline, b""):
        if not any(quiet.match(line) for quiet in QUIET_LINES):
            target.write(line)
            target.flush()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ends when the pipe closes, not before
    copy_lines(sys.stdin.buffer, sys.stdout.buffer)
