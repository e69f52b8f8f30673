#!/usr/bin/env bash
# Sets up (or refreshes) the project's virtual environment in .venv.
# Idempotent: pip runs only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")"
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
# Graphviz's `dot` draws the diagrams of `cli.py plot`. Installed only where it is missing and
# this is root on a Debian-like system; anywhere else `plot` says how to install it. Never fatal.
if ! command -v dot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; } \
            || echo "setup.sh: could not install graphviz; 'cli.py plot' needs it (apt-get install graphviz)" >&2
    else
        echo "setup.sh: Graphviz ('dot') not found; 'cli.py plot' needs it (apt-get install graphviz)" >&2
    fi
fi
stamp=.venv/.archbuilder-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[test,export]"
    echo "$want" > "$stamp"
fi
