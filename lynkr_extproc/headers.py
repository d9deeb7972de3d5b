"""Internal headers between Envoy and lynkr-extproc; none reaches clients or upstreams."""

ROUTING_HEADER = "x-lynkr-upstream"
"""Set by the service after admission; Envoy routes on it and removes it."""
SERVED_BY_HEADER = "x-lynkr-served-by"
"""Set on the response of the fallback attempt that produced it."""


def tier_route_value(tier_name: str, client_api: str) -> str:
    """Return the routing header value that sends a request to a tier's fallback chain.

    Each (tier, client API) pair has its own route, whose metadata gives
    the per-attempt processor both. Request headers cannot carry them,
    because Envoy shares one header map between all attempts.
    """
    return f"tier:{tier_name}:{client_api}"
