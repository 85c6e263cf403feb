"""Reusable L3 constructs: secure-by-default wrappers that keep the L2 API reachable."""
