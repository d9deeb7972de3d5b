"""Real components for tests: an HTTP upstream, Envoy, the ext_proc server."""
