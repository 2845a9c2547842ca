"""What a run leaves behind: summaries, CSV/JSON files, plots, terminal tables and progress.

Everything here consumes :class:`~llmtwin.cluster.records.RunResult` and never drives a run.
"""
