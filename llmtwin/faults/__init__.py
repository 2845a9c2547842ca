"""What simulated accelerator failures cost: figures of one run, and a run against its fault-free twin."""
