"""Calibration: fit a device's kernel-shape parameters and an engine-overhead profile to measured
timings (Vidur profiling CSVs, splitwise-sim iteration tables), and report the fit error."""
