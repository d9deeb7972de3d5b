"""Build ext_proc ProcessingResponse messages.

Header values are written to `raw_value`: Envoy 1.40 ignores `value`.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.type.v3 import http_status_pb2

from .errors import ClientError

ProcessingMode = processing_mode_pb2.ProcessingMode

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_map(headers: Any) -> dict[str, str]:
    """Return an HttpHeaders map as lower-case names to values, repeats joined by commas."""
    result: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        key = header.key.lower()
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def header_mutation(
    set_headers: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
) -> ext_proc.HeaderMutation:
    mutation = ext_proc.HeaderMutation(remove_headers=list(remove))
    for key, value in (set_headers or {}).items():
        mutation.set_headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
                append_action=_OVERWRITE,
            )
        )
    return mutation


def common(
    *,
    set_headers: Mapping[str, str] | None = None,
    remove: Iterable[str] = (),
    body: bytes | None = None,
    clear_route_cache: bool = False,
) -> ext_proc.CommonResponse:
    response = ext_proc.CommonResponse()
    remove = list(remove)
    if set_headers or remove:
        response.header_mutation.CopyFrom(header_mutation(set_headers, remove))
    if body is not None:
        response.body_mutation.body = body
    if clear_route_cache:
        response.clear_route_cache = True
    return response


def error_body(error: ClientError, style: str) -> bytes:
    """Return the JSON error body for clients of the given API style.

    Both SDKs parse this shape: the Anthropic SDK reads the top-level
    "type": "error" and error.type, the OpenAI SDK reads error.message,
    error.type and error.code.
    """
    detail: dict[str, object] = {"type": error.error_type, "message": error.message}
    if style == "openai":
        detail["code"] = error.error_type
        detail["param"] = None
    detail.update(error.extra_fields())
    return json.dumps({"type": "error", "error": detail}, separators=(",", ":")).encode()


def immediate(error: ClientError, style: str) -> ext_proc.ProcessingResponse:
    """Answer the client now with `error`; nothing goes upstream."""
    headers = {"content-type": "application/json", **error.extra_headers()}
    return ext_proc.ProcessingResponse(
        immediate_response=ext_proc.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=error.status),
            headers=header_mutation(headers),
            body=error_body(error, style),
            details=f"lynkr_{error.error_type}",
        )
    )


def request_headers(
    response: ext_proc.CommonResponse,
    mode: ProcessingMode | None = None,
) -> ext_proc.ProcessingResponse:
    message = ext_proc.ProcessingResponse(
        request_headers=ext_proc.HeadersResponse(response=response)
    )
    if mode is not None:
        message.mode_override.CopyFrom(mode)
    return message


def request_body(response: ext_proc.CommonResponse) -> ext_proc.ProcessingResponse:
    return ext_proc.ProcessingResponse(
        request_body=ext_proc.BodyResponse(response=response)
    )


def response_headers(
    response: ext_proc.CommonResponse,
    mode: ProcessingMode | None = None,
) -> ext_proc.ProcessingResponse:
    message = ext_proc.ProcessingResponse(
        response_headers=ext_proc.HeadersResponse(response=response)
    )
    if mode is not None:
        message.mode_override.CopyFrom(mode)
    return message


def response_body(response: ext_proc.CommonResponse) -> ext_proc.ProcessingResponse:
    return ext_proc.ProcessingResponse(
        response_body=ext_proc.BodyResponse(response=response)
    )


def trailers_response(kind: str) -> ext_proc.ProcessingResponse:
    return ext_proc.ProcessingResponse(**{kind: ext_proc.TrailersResponse()})


PASS_THROUGH = ProcessingMode(
    request_body_mode=ProcessingMode.NONE,
    response_header_mode=ProcessingMode.SKIP,
    response_body_mode=ProcessingMode.NONE,
)
STREAM_RESPONSE = ProcessingMode(response_body_mode=ProcessingMode.STREAMED)
BUFFER_RESPONSE = ProcessingMode(response_body_mode=ProcessingMode.BUFFERED)
