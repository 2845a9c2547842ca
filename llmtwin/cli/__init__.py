"""The ``llmtwin`` command line."""
