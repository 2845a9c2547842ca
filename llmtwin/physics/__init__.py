"""The device cost model: a decoder layer's op graph, per-op roofline times and collectives."""
