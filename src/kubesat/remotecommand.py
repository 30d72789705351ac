"""The streaming protocols of exec, attach and port-forward over WebSocket, as pure functions shared by the API
server and the agent: subprotocol choice, channel framing and the error channel's Status.

A binary protocol prefixes each message with its channel byte (stdin 0, stdout 1, stderr 2, error 3, resize 4);
a base64 one sends text messages whose first character is the channel digit and whose rest is base64.
`v4.` puts a JSON Status on the error channel (`v1`-`v3` plain text), `v5.` adds the close signal: channel
255 with the number of the channel the sender will write no more to.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"

EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)
PORT_FORWARD_PROTOCOLS = (V4, V4_BASE64, V1, V1_BASE64)
# kubectl 1.31+: SPDY/3 port-forward tunneled in the WebSocket's binary messages (`kubesat.spdy`).
PORT_FORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"
# The same tunnel between the API server and the agent's kubelet API, named without the '/' that the
# WebSocket library's RFC 6455 token check refuses (kube-apiserver speaks SPDY proper to kubelets).
PORT_FORWARD_TUNNEL_HOP = "spdy3-tunnel.portforward.kubesat.io"

# Go's exit status names (apimachinery remotecommand constants).
NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


class FrameError(Exception):
    """A message that is not a frame of the negotiated protocol."""


def choose(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The subprotocol to accept: the first one the client offered that is supported (as the kubelet's wsstream
    picks); "" when the client offered none (the original binary protocol); None when none of its offers is."""
    if not offered:
        return ""
    for p in offered:
        if p in supported:
            return p
    return None


@dataclass(frozen=True)
class Framing:
    """How one negotiated protocol puts channels into WebSocket messages."""

    protocol: str

    @property
    def base64(self) -> bool:
        return self.protocol in (V4_BASE64, V1_BASE64)

    @property
    def status_errors(self) -> bool:
        """Whether the error channel carries a JSON Status (v4 and v5) rather than text."""
        return self.protocol in (V5, V4, V4_BASE64)

    @property
    def close_signal(self) -> bool:
        return self.protocol == V5

    @property
    def resize(self) -> bool:
        return self.protocol in (V5, V4, V4_BASE64, V3)

    def encode(self, channel: int, data: bytes) -> bytes | str:
        """One message: bytes for a binary protocol, text for a base64 one."""
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode()
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes]:
        """(channel, data) of a message; FrameError when it is not one of this protocol's."""
        if self.base64:
            if not isinstance(message, str) or not message:
                raise FrameError("a base64 channel protocol sends text messages")
            channel = ord(message[0]) - ord("0")
            if not 0 <= channel <= 9:
                raise FrameError(f"invalid channel {message[0]!r}")
            try:
                return channel, base64.b64decode(message[1:], validate=True)
            except (binascii.Error, ValueError):
                raise FrameError("the message is not base64") from None
        if isinstance(message, str):
            message = message.encode()
        if not message:
            raise FrameError("an empty message has no channel")
        return message[0], message[1:]

    def close(self, channel: int) -> bytes | str | None:
        """The v5 close signal for `channel` (None when the protocol has none)."""
        if not self.close_signal:
            return None
        return self.encode(CLOSE, bytes((channel,)))


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int, command: list[str]) -> dict[str, Any]:
    """The Status of a command that ended non-zero, as the kubelet writes it (client-go reads the code from
    the cause and says `command terminated with exit code N`)."""
    return {
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {_go_list(command)}, "
                   f"exit code {code}",
        "reason": NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def internal_status(message: str) -> dict[str, Any]:
    """A failure that is not the command's: `Internal error occurred: ...` as apimachinery's NewInternalError."""
    return {
        "metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
        "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500,
    }


def error_payload(framing: Framing, status: dict[str, Any]) -> bytes:
    """What the error channel carries: the Status for v4/v5; for older protocols its message, and nothing on
    success."""
    if framing.status_errors:
        return orjson.dumps(status)
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """A resize message `{"Width":80,"Height":24}` as (width, height); None when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    w, h = doc.get("Width"), doc.get("Height")
    if not isinstance(w, int) or not isinstance(h, int) or not (0 <= w <= 0xFFFF and 0 <= h <= 0xFFFF):
        return None
    return w, h


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"
