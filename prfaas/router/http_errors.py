"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with the HTTP status.

Client mistakes are 4xx and never 5xx, because the `openai` SDK retries 429 and 5xx.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from prfaas.metrics import RouterMetrics
from prfaas.router.generation_backend import BackendError, ContextTooLong, NotReady, Overloaded

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
MAX_MESSAGE_CHARS = 2000
BODY_NOT_AN_OBJECT = "The request body must be a JSON object."
# Names pydantic puts into an error's location for the member of a union it tried
# (`prompt: str | list[int]` fails as ("prompt", "str") and ("prompt", "list[int]")).
_UNION_MEMBER_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}


class APIError(Exception):
    """An error answered in the OpenAI shape; raise it anywhere in a handler."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error_type = ERROR_TYPES.get(self.status_code, "APIError")
        message = _printable(self.message[:MAX_MESSAGE_CHARS])
        return {
            "error": {
                "message": message,
                "type": error_type,
                "param": None if self.param is None else _printable(self.param),
                "code": self.status_code,
            }
        }


def from_backend_error(exc: BackendError) -> APIError:
    """Map a backend error raised before the response started to its HTTP status."""
    if isinstance(exc, Overloaded):
        retry_after = str(max(1, math.ceil(exc.retry_after_s)))
        return APIError(429, str(exc), headers={"Retry-After": retry_after})
    if isinstance(exc, NotReady):
        return APIError(503, str(exc) or "server is not ready")
    if isinstance(exc, ContextTooLong):
        return APIError(400, str(exc), param="prompt")
    return APIError(500, f"generation failed: {exc}")


def _printable(text: str) -> str:
    """Text that encodes as UTF-8: a client's lone surrogate echoed in a message becomes "?"
    (the JSON response could not be written otherwise)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    """`("body", "messages", 0, "content", "str")` -> "messages[0].content" (None: the body)."""
    path = ""
    for part in loc[1:]:  # loc[0] is "body"
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in _UNION_MEMBER_NAMES:
            continue
        else:
            path += f".{part}" if path else part
    return path or None


def _validation_error(exc: RequestValidationError) -> APIError:
    """A pydantic/JSON error as one 400: `param` the field's path, the message what is wrong."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid syntax")
        position = first["loc"][-1] if first.get("loc") else "?"
        return APIError(
            400, f"The request body is not valid JSON: {reason} (at character {position})."
        )
    param = _field_path(tuple(first.get("loc", ())))
    if param is None and first.get("type") in ("missing", "model_attributes_type"):
        return APIError(400, BODY_NOT_AN_OBJECT)
    # A union reports one error per member it tried; say what each would have needed.
    same_field = [e for e in errors if _field_path(tuple(e.get("loc", ()))) == param]
    reasons = "; ".join(dict.fromkeys(e.get("msg", "invalid value") for e in same_field))
    return APIError(400, f"{param}: {reasons}" if param else reasons, param=param)


def install_error_handlers(app: FastAPI, metrics: RouterMetrics) -> None:
    """Answer every error of `app` in the OpenAI shape (validation errors as 400, not 422)."""

    def respond(error: APIError) -> JSONResponse:
        metrics.record_http_error(error.status_code)
        return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return respond(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(_validation_error(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return respond(APIError(exc.status_code, str(exc.detail)))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return respond(APIError(500, f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
