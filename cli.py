#!/usr/bin/env python3
"""archbuilder's command line: `python cli.py --help`."""

from archbuilder.cli import run

if __name__ == "__main__":
    run()
