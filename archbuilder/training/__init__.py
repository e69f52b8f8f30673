"""Training: the fit loop (loop.py), what a run folder holds (run_dir.py), metrics and plots."""
