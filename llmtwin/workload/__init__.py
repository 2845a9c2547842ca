"""Request streams: arrival processes and prompt/output length distributions."""
