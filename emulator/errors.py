"""Error answers in Microsoft's shapes: Graph's `{"error": {code, message, innerError}}` and
Exchange admin REST's generic message with the cmdlet's real reason nested in details/innererror."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from fastapi.responses import JSONResponse

from emulator.timestamps import format_datetime

GRAPH_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Authorization_RequestDenied",
    404: "ResourceNotFound", 405: "MethodNotAllowed", 409: "Conflict", 429: "TooManyRequests",
    500: "InternalServerError", 502: "BadGateway", 503: "ServiceNotAvailable", 504: "GatewayTimeout",
}
FAULT_MESSAGES = {
    429: "Too many requests. Please retry after the time in the Retry-After header.",
    503: "The service is temporarily unavailable. Please retry after the time in the Retry-After header.",
}
EXO_SERVER = "EMULATOR01.PROD.OUTLOOK.COM"


class GraphError(Exception):
    """Raised by a Graph handler; answered in Graph's error shape."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or GRAPH_CODES.get(status, "UnknownError")
        self.message = message


class ExoError(Exception):
    """A cmdlet failure; `exception` is the Exchange/PowerShell exception type that names the reason."""

    def __init__(self, exception: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.exception = exception
        self.message = message
        self.status = status


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": format_datetime(datetime.now(timezone.utc).replace(microsecond=0)),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def exo_error(error: ExoError, headers: dict[str, str] | None = None) -> JSONResponse:
    reason = f"Ex{uuid.uuid4().hex[:6].upper()}|{error.exception}|{error.message}"
    body = {
        "error": {
            "code": GRAPH_CODES.get(error.status, "InternalServerError"),
            "message": "Error executing cmdlet",
            "details": [{"code": "Context", "target": "", "message": reason}],
            "innererror": {
                "message": "Error executing cmdlet",
                "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "stacktrace": "",
                "internalexception": {
                    "message": reason,
                    "type": "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException",
                    "stacktrace": "",
                },
            },
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": [],
        }
    }
    return JSONResponse(body, status_code=error.status, headers=headers)


def not_found_exo(identity: str) -> ExoError:
    return ExoError(
        "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException",
        f"The operation couldn't be performed because object '{identity}' couldn't be found on '{EXO_SERVER}'.",
    )
