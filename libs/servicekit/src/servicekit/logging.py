"""Structured JSON logs without personal data, each line with its trace and request id (OPS-2).

Every line, whoever logs it - structlog, or the standard `logging` of uvicorn, FastStream,
aiokafka, asyncpg - is one JSON object on stdout with `service`, `level`, `logger`,
`timestamp`, `trace_id`, `span_id` and `request_id` (null outside a trace / a request).

Personal data never reaches the output, whatever the caller passes:
- values under keys that name personal data or secrets (`SENSITIVE_KEYS`, at any depth)
  are masked;
- in every text (messages, values, third-party log lines), IBANs, e-mail addresses,
  query strings, `password=...`-style pairs, pydantic's `input_value=...` and runs of 6 to
  8 digits (codes, mTANs) are masked;
- `error=repr(exc)` keeps the exception's type only (network errors their masked text);
- exception traces show the exception types and the frames (file, line, function), never
  the exceptions' messages nor source lines: a message may quote any input. Exceptions of
  the network layer (`OSError`, timeouts, Kafka errors) keep their message.
Log the customer id, never names, addresses, e-mails, IBANs or codes.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import IO, Any, TypeAlias

import structlog
from opentelemetry import trace

SENSITIVE_KEYS = frozenset(
    {
        "password", "new_password", "old_password", "token", "access_token", "refresh_token",
        "authorization", "secret", "code", "otp", "mtan", "tan", "pin", "iban", "bic",
        "email", "mobile", "phone", "name", "first_name", "last_name", "given_name",
        "family_name", "full_name", "address", "street", "birth_date", "date_of_birth",
        "diagnosis", "database_url", "reset_url", "cookie", "set-cookie",
    }
)  # fmt: skip
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){3,7}(?:\s?[A-Z0-9]{1,3})?\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_QUERY = re.compile(r"(?<=\?)[^\s\"'#]+")
_PAIR = re.compile(
    r"(?i)\b(password|passwort|secret|token|code|mtan|pin|iban|name|email)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)"
)
_PYDANTIC_INPUT = re.compile(r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,\]]+)")
_DIGITS = re.compile(r"(?<![\w.:-])\d{6,8}(?![\w.:-])")
MASK = "***"
# Keys under which callers log `repr(exc)`: an exception's repr quotes its message, which may
# quote any input; only the type is kept (network errors keep their masked text).
ERROR_KEYS = frozenset({"error", "exc", "exception_message"})
_REPR = re.compile(r"^([A-Za-z_][\w.]*)\((.*)\)$", re.DOTALL)
_NETWORK_ERROR_NAMES = ("Kafka", "Connection", "Timeout", "OSError", "ConnectError")

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
# Exceptions whose messages describe the network, never a person: kept in traces.
_MESSAGE_KEPT = (OSError, TimeoutError, ConnectionError)
_MESSAGE_KEPT_MODULES = ("aiokafka.", "kafka.", "asyncpg.exceptions._base")


def mask_text(text: str) -> str:
    """`text` with every pattern that may be personal data masked."""
    text = _IBAN.sub(MASK, text)
    text = _EMAIL.sub(MASK, text)
    text = _QUERY.sub(MASK, text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _PYDANTIC_INPUT.sub(f"input_value={MASK}", text)
    return _DIGITS.sub(MASK, text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {
            k: MASK if str(k).lower() in SENSITIVE_KEYS else _masked(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return value


def _error_text(value: str) -> str:
    shape = _REPR.match(value)
    if shape is None or any(n in shape.group(1) for n in _NETWORK_ERROR_NAMES):
        return mask_text(value)
    return f"{shape.group(1)}(<message withheld>)"


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key.lower() in SENSITIVE_KEYS:
            event[key] = MASK
        elif key in ERROR_KEYS and isinstance(value, str):
            event[key] = _error_text(value)
        elif key not in ("timestamp", "trace_id", "span_id", "level", "logger"):
            event[key] = _masked(value)
    return event


def safe_traceback(exc_info: ExcInfo) -> str:
    """The trace of an exception (and its causes): types and frames, no messages."""
    parts: list[str] = []
    seen: set[int] = set()
    exc: BaseException | None = exc_info[1]
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = traceback.extract_tb(exc.__traceback__)
        lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
        parts.append(
            "\n".join(["Traceback (most recent call last):", *lines, _exception_line(exc)])
        )
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n\nwhich led to:\n\n".join(reversed(parts))


def _exception_line(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    name = kind.__name__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    if _message_kept(exc):
        return f"{name}: {mask_text(str(exc))}"
    return f"{name}: <message withheld>"


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def withhold_exception_text(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A message that quotes the exception it reports (FastStream: `f"{type}: {exc}"`)
    loses the quote, as the trace does."""
    exc = _exception_of(event.get("exc_info"))
    message = event.get("event")
    if exc is None or not isinstance(message, str) or _message_kept(exc):
        return event
    text = str(exc)
    if text and text in message:
        event["event"] = message.replace(text, "<message withheld>")
    return event


def _message_kept(exc: BaseException) -> bool:
    return isinstance(exc, _MESSAGE_KEPT) or type(exc).__module__.startswith(_MESSAGE_KEPT_MODULES)


def add_trace_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`trace_id`/`span_id` of the active span; `request_id` bound by the HTTP middleware."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    else:
        event.setdefault("trace_id", None)
        event.setdefault("span_id", None)
    event.setdefault("request_id", None)
    return event


def _drop_color_message(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's duplicate of the message
    return event


class _Output:
    """Where lines go: the stream given to `configure_logging`, else the current
    `sys.stdout` (looked up per line, so pytest's capture sees it)."""

    stream: IO[str] | None = None

    def write(self, text: str) -> int:
        return (self.stream or sys.stdout).write(text)

    def flush(self) -> None:
        (self.stream or sys.stdout).flush()


_OUTPUT = _Output()
_HANDLER_MARK = "_portal_json_handler"

_EXCEPTIONS = structlog.processors.ExceptionRenderer(safe_traceback)


def configure_logging(service: str, level: str = "INFO", stream: IO[str] | None = None) -> None:
    """JSON lines for structlog and the standard library alike (see the module's text)."""
    _OUTPUT.stream = stream
    numeric = logging.getLevelName(level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    final: list[Any] = [
        withhold_exception_text,
        _EXCEPTIONS,
        _drop_color_message,
        redact,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedPrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_OUTPUT)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        named = logging.getLogger(name)
        named.handlers.clear()  # their own handlers would print plain text
        named.propagate = True
    logging.captureWarnings(True)
    structlog.contextvars.bind_contextvars(service=service)


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, name: str | None) -> None:
        super().__init__(_OUTPUT)  # type: ignore[arg-type]
        self.name = name or "portal"


class _NamedPrintLoggerFactory:
    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(str(args[0]) if args else None)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
