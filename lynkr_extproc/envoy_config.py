"""Generate the Envoy bootstrap that puts lynkr-extproc in the request path.

Choices, each for a reason stated in the README's "Envoy settings":
- request body BUFFERED, so that a routing header set after reading the
  model is applied and `clear_route_cache` re-selects the route;
- response body BUFFERED by default, switched to STREAMED per response by
  `mode_override` when the upstream responds with text/event-stream;
- `failure_mode_allow: false`: traffic never goes upstream unmetered;
- `message_timeout` 2 s (the 200 ms default turns a slow budget check
  into a 504) and `status_on_error` 503, so clients retry;
- buffer limits of 64 MiB, above the service's own 32 MiB request limit,
  so large agent prompts are not answered 413 by Envoy.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

from .config import Config, Tier, Upstream
from .attempt import ATTEMPT_ATTRIBUTE, ROUTE_ATTRIBUTE
from .formats import BY_PATH_API_NAMES as CLIENT_APIS
from .headers import ROUTING_HEADER, tier_route_value
from .workers import worker_address

EXT_PROC_CLUSTER = "lynkr_extproc"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_NO_UPSTREAM_BODY = json.dumps(
    {
        "type": "error",
        "error": {
            "type": "not_found",
            "message": "no upstream was selected for this request; "
            "check that the ext_proc service is configured for this path",
        },
    },
    separators=(",", ":"),
)


def bootstrap(config: Config) -> dict[str, Any]:
    """Return the Envoy bootstrap as a plain dict, ready for YAML."""
    settings = config.envoy
    return {
        "admin": {"address": _socket("127.0.0.1", settings.admin_port)},
        "static_resources": {
            "listeners": [_listener(config)],
            "clusters": [_ext_proc_cluster(config)]
            + [_upstream_cluster(config, upstream) for upstream in config.upstreams.values()]
            + [_tier_cluster(config, tier) for tier in config.tiers.values() if tier.fallback],
        },
    }


CIRCUIT_BREAKERS = {
    "thresholds": [{
        "max_connections": 100_000,
        "max_pending_requests": 100_000,
        "max_requests": 100_000,
        "max_retries": 10_000,
    }]
}
"""Raised from Envoy's default of 1,024, which caps concurrent agent streams."""


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _listener(config: Config) -> dict[str, Any]:
    settings = config.envoy
    return {
        "name": "lynkr",
        "address": _socket(settings.listen_host, settings.listen_port),
        "per_connection_buffer_limit_bytes": settings.buffer_limit_bytes,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "lynkr",
                "codec_type": "AUTO",
                "use_remote_address": True,
                "preserve_external_request_id": False,
                # Every client counts as external, so Envoy replaces any
                # x-request-id it sends: the id keys the spend record, and
                # a client that reused one could avoid being charged. An
                # empty list would fall back to Envoy's defaults, which
                # treat loopback and private ranges as internal.
                "internal_address_config": {
                    "cidr_ranges": [{"address_prefix": "255.255.255.255", "prefix_len": 32}]
                },
                "stream_idle_timeout": "300s",
                "local_reply_config": _unavailable_replies(),
                "route_config": _routes(config),
                "http_filters": _http_filters(config),
            },
        }]}],
    }


def _routes(config: Config) -> dict[str, Any]:
    routes = [route for tier in config.tiers.values() if tier.fallback for route in _tier_routes(config, tier)]
    routes += [_upstream_route(config, upstream) for upstream in config.upstreams.values()]
    routes.append({
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": _NO_UPSTREAM_BODY}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/json"}}
        ],
    })
    return {"name": "lynkr", "virtual_hosts": [{"name": "lynkr", "domains": ["*"], "routes": routes}]}


def _upstream_route(config: Config, upstream: Upstream) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": upstream.cluster,
        "timeout": f"{config.envoy.route_timeout_s}s",
        "host_rewrite_literal": _authority(upstream),
    }
    if upstream.base_path:
        action["prefix_rewrite"] = upstream.base_path + "/"
    return {
        "match": {
            "prefix": "/",
            "headers": [{"name": ROUTING_HEADER, "string_match": {"exact": upstream.name}}],
        },
        "route": action,
        "request_headers_to_remove": [ROUTING_HEADER],
    }


def _tier_routes(config: Config, tier: Tier) -> list[dict[str, Any]]:
    """Routes to a tier's chain, one per client API.

    Envoy retries connect failures, resets, 5xx and 429 responses; the
    `previous_priorities` retry priority excludes the priorities already
    tried, so attempt N goes to fallback N. The route's metadata names the
    tier and the client's API for the per-attempt processor.
    """
    return [
        {
            "match": {
                "prefix": "/",
                "headers": [{
                    "name": ROUTING_HEADER,
                    "string_match": {"exact": tier_route_value(tier.name, api)},
                }],
            },
            "metadata": {"filter_metadata": {"lynkr": {"tier": tier.name, "client_api": api}}},
            "route": {
                "cluster": f"tier_{tier.name}",
                "timeout": f"{config.envoy.route_timeout_s}s",
                "auto_host_rewrite": True,
                "retry_policy": {
                    "retry_on": "connect-failure,refused-stream,reset,5xx,retriable-status-codes",
                    "retriable_status_codes": [429],
                    "num_retries": len(tier.fallback),
                    "retry_priority": {
                        "name": "envoy.retry_priorities.previous_priorities",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.retry.priority."
                            "previous_priorities.v3.PreviousPrioritiesConfig",
                            "update_frequency": 1,
                        },
                    },
                    "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.5s"},
                },
            },
            "request_headers_to_remove": [ROUTING_HEADER],
        }
        for api in CLIENT_APIS
    ]


def _tier_cluster(config: Config, tier: Tier) -> dict[str, Any]:
    """Return the cluster of a tier's fallback chain, where priority N is attempt N.

    Each endpoint carries its upstream's name in metadata, which the
    per-attempt ext_proc filter reads to translate and authenticate the
    request for that provider; TLS settings are matched per endpoint.
    """
    endpoints = []
    sockets = []
    for priority, (upstream, _) in enumerate(tier.attempts()):
        endpoints.append({
            "priority": priority,
            "lb_endpoints": [{
                "endpoint": {
                    "address": _socket(upstream.host, upstream.port),
                    "hostname": _authority(upstream),
                },
                "metadata": {"filter_metadata": {
                    "lynkr": {"upstream": upstream.name},
                    "envoy.transport_socket_match": {"lynkr_upstream": upstream.name},
                }},
            }],
        })
        if upstream.scheme == "https":
            sockets.append({
                "name": upstream.name,
                "match": {"lynkr_upstream": upstream.name},
                "transport_socket": _tls_socket(upstream),
            })
    name = f"tier_{tier.name}"
    return {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "5s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "dns_lookup_family": "V4_PREFERRED",
        "per_connection_buffer_limit_bytes": config.envoy.buffer_limit_bytes,
        "transport_socket_matches": sockets,
        "load_assignment": {"cluster_name": name, "endpoints": endpoints},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [_attempt_ext_proc(config), _UPSTREAM_CODEC],
            }
        },
    }


def _attempt_ext_proc(config: Config) -> dict[str, Any]:
    """Return the ext_proc filter that prepares each attempt for its own upstream."""
    settings = config.envoy
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": EXT_PROC_CLUSTER,
                    "max_receive_message_length": 2 * settings.buffer_limit_bytes,
                },
            },
            "failure_mode_allow": False,
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            "request_attributes": [ATTEMPT_ATTRIBUTE, ROUTE_ATTRIBUTE],
            "message_timeout": f"{settings.message_timeout_ms / 1000}s",
            "mutation_rules": {"allow_all_routing": True},
            "status_on_error": {"code": "ServiceUnavailable"},
        },
    }


def _authority(upstream: Upstream) -> str:
    default = 443 if upstream.scheme == "https" else 80
    return upstream.host if upstream.port == default else f"{upstream.host}:{upstream.port}"


UNAVAILABLE_MESSAGE = (
    "lynkr-extproc, the budget service in front of this API, did not answer "
    "(%RESPONSE_CODE_DETAILS%); retry shortly"
)


def _unavailable_replies() -> dict[str, Any]:
    """Return JSON bodies for the 503 Envoy sends when the ext_proc service fails.

    Envoy's own reply has an empty body. The filter matches only replies
    whose details start with ext_proc_error, so the JSON errors that
    lynkr-extproc itself sends (429, 401, ...) pass unchanged. Anthropic
    Messages paths get Anthropic's error shape, the others OpenAI's.
    """
    failed = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "response.code_details.startsWith('ext_proc_error')",
            },
        }
    }
    anthropic_path = {
        "header_filter": {"header": {"name": ":path", "string_match": {"prefix": "/v1/messages"}}}
    }
    retry = [{"header": {"key": "retry-after", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    return {
        "mappers": [
            {
                "filter": {"and_filter": {"filters": [failed, anthropic_path]}},
                "headers_to_add": retry,
                "body_format_override": {
                    "json_format": {
                        "type": "error",
                        "error": {"type": "api_error", "message": UNAVAILABLE_MESSAGE},
                    }
                },
            },
            {
                # Copies, so that written YAML has no anchors and aliases.
                "filter": copy.deepcopy(failed),
                "headers_to_add": copy.deepcopy(retry),
                "body_format_override": {
                    "json_format": {
                        "error": {
                            "message": UNAVAILABLE_MESSAGE,
                            "type": "api_error",
                            "code": "budget_service_unavailable",
                        }
                    }
                },
            },
        ]
    }


def _http_filters(config: Config) -> list[dict[str, Any]]:
    settings = config.envoy
    # Compressors come first: on the response path they run after ext_proc,
    # which therefore reads the uncompressed body, and they compress for
    # the client according to its original accept-encoding.
    compressors = [
        _compressor("gzip", "envoy.extensions.compression.gzip.compressor.v3.Gzip"),
        _compressor("brotli", "envoy.extensions.compression.brotli.compressor.v3.Brotli"),
        _compressor("zstd", "envoy.extensions.compression.zstd.compressor.v3.Zstd"),
    ]
    ext_proc = {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": EXT_PROC_CLUSTER,
                    "max_receive_message_length": 2 * settings.buffer_limit_bytes,
                },
            },
            "failure_mode_allow": False,
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            "allow_mode_override": True,
            "message_timeout": f"{settings.message_timeout_ms / 1000}s",
            "max_message_timeout": f"{settings.max_message_timeout_ms / 1000}s",
            "status_on_error": {"code": "ServiceUnavailable"},
        },
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "suppress_envoy_headers": True,
        },
    }
    return [*compressors, ext_proc, router]


def _compressor(name: str, type_name: str) -> dict[str, Any]:
    return {
        "name": f"envoy.filters.http.compressor.{name}",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor",
            "compressor_library": {
                "name": name,
                "typed_config": {"@type": f"type.googleapis.com/{type_name}"},
            },
        },
    }


def _ext_proc_cluster(config: Config) -> dict[str, Any]:
    """Return the HTTP/2 cluster of ext_proc servers, which spreads streams round-robin."""
    endpoints = []
    default = tuple(worker_address(config.listen, index) for index in range(config.workers))
    for address in config.envoy.ext_proc_addresses or default:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        endpoints.append((host, int(port)))
    static = all(_discovery(host) == "STATIC" for host, _ in endpoints)
    return {
        "name": EXT_PROC_CLUSTER,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "1s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": EXT_PROC_CLUSTER,
            "endpoints": [{
                "lb_endpoints": [
                    {"endpoint": {"address": _socket(host, port)}} for host, port in endpoints
                ],
            }],
        },
    }


def _upstream_cluster(config: Config, upstream: Upstream) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": upstream.cluster,
        "type": _discovery(upstream.host),
        "connect_timeout": "5s",
        "circuit_breakers": CIRCUIT_BREAKERS,
        "dns_lookup_family": "V4_PREFERRED",
        "per_connection_buffer_limit_bytes": config.envoy.buffer_limit_bytes,
        "load_assignment": _endpoints(upstream.cluster, upstream.host, upstream.port),
    }
    if upstream.scheme == "https":
        cluster["transport_socket"] = _tls_socket(upstream)
    if upstream.auth == "sigv4":
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [_sigv4_filter(upstream), _UPSTREAM_CODEC],
            }
        }
    return cluster


_UPSTREAM_CODEC = {
    "name": "envoy.filters.http.upstream_codec",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec",
    },
}


def _sigv4_filter(upstream: Upstream) -> dict[str, Any]:
    """Sign each request to Bedrock with SigV4, after lynkr set its final path and body.

    Envoy takes the AWS credentials from its environment (variables,
    profile, instance or pod role), so the service never receives them. The
    payload is signed, so the filter buffers each request body.
    """
    return {
        "name": "envoy.filters.http.aws_request_signing",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
            "service_name": "bedrock",
            "region": upstream.region,
            "use_unsigned_payload": False,
        },
    }


def _tls_socket(upstream: Upstream) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": upstream.host,
            "common_tls_context": {
                "validation_context": {"trusted_ca": {"filename": CA_BUNDLE}},
            },
        },
    }


def _discovery(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "LOGICAL_DNS"
    return "STATIC"


def _endpoints(name: str, host: str, port: int) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
    }
