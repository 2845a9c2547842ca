"""Capacity studies: the highest rate each policy serves within its SLOs, or the smallest cluster
that serves a rate, with baselines at their fixed and their best configuration (``study.py``).
"""
