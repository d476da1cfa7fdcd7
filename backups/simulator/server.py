"""The simulator over real HTTP, on the standard library's threading server.

with SimulatorServer(DcsSimulator(...), port=0) as server:
    requests.get(server.url + "/v2/<project>/instances", auth=...)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from backups.simulator.api import DcsSimulator, SimResponse
from backups.simulator.faults import FaultConfigError, FaultSettings

__all__ = ["DcsSimulator", "SimulatorServer"]

logger = logging.getLogger("backups.simulator")

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
# Tests switch faults on and off here (GET/POST/DELETE, JSON, unsigned, loopback only).
FAULTS_PATH = "/_simulator/faults"
_MAX_BODY_BYTES = 12 * 1024 * 1024  # the gateway's limit (dcs-api.md §3.3, APIG.0201)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that keeps its connection open must not block stop()

    def __init__(self, address: tuple[str, int], simulator: DcsSimulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.simulator = simulator
        # Open keep-alive connections, closed on stop so no handler thread
        # goes on answering a client that still holds its connection.
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it first
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    # Keep-alive, as the SDK's requests session expects; every answer
    # therefore carries its length.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits
    # for the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "DcsSimulator"

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > _MAX_BODY_BYTES:
            # The rest stays unread, so this connection cannot carry another request.
            self.close_connection = True
        body = self.rfile.read(min(length, _MAX_BODY_BYTES)) if length > 0 else b""
        if path == FAULTS_PATH and self._from_loopback():
            self._send(self._fault_control(body))
            return
        try:
            response = self.server.simulator.handle(
                method=self.command, path=path, query=query, headers=dict(self.headers.items()), body=body
            )
        except Exception:
            logger.exception("simulator failed on %s %s", self.command, path)
            error = {"error_code": "DCS.5000", "error_msg": "Internal service error.", "error_ext_msg": None}
            response = SimResponse(500, error, "")
        # One line per request, logged before the answer leaves so a caller
        # never sees an answer whose line is not written yet. Never the
        # headers: they carry the signature.
        logger.info(
            "%s %s %s%s", self.command, path, response.status, f" ({response.drop})" if response.drop else ""
        )
        try:
            self._send(response)
        except ConnectionError:
            # The client gave up first (a read timeout on a slow answer): nobody to answer.
            self.close_connection = True

    def _from_loopback(self) -> bool:
        try:
            address = ipaddress.ip_address(self.client_address[0].split("%")[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback

    def _fault_control(self, body: bytes) -> SimResponse:
        faults = self.server.simulator.faults
        if self.command == "POST":
            try:
                faults.configure(FaultSettings.from_dict(self._json_object(body)))
            except FaultConfigError as exc:
                return SimResponse(400, {"error": str(exc)}, "")
        elif self.command == "DELETE":
            faults.reset()
        elif self.command != "GET":
            return SimResponse(405, {"error": "use GET, POST or DELETE"}, "")
        logger.info("%s %s 200: faults %s", self.command, FAULTS_PATH, faults.settings.as_dict())
        return SimResponse(200, faults.as_dict(), "")

    @staticmethod
    def _json_object(body: bytes) -> dict:
        try:
            data = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            raise FaultConfigError("the body must be a JSON object of fault settings") from None
        if not isinstance(data, dict):
            raise FaultConfigError("the body must be a JSON object of fault settings")
        return data

    def _send(self, response: SimResponse) -> None:
        if response.delay > 0:
            self.server.simulator.faults.wait(response.delay)
        if response.drop == "before-response":
            # The connection dies with the request unanswered.
            self._hang_up()
            return
        self.send_response(response.status)
        if response.request_id:
            self.send_header("X-Request-Id", response.request_id)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.body is None and response.raw is None:
            # 204: no body, no Content-Type, no Content-Length (RFC 9110 §8.6).
            self.end_headers()
            return
        if response.raw is not None:
            payload = response.raw
            self.send_header("Content-Type", response.content_type or JSON_CONTENT_TYPE)
        else:
            payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.drop == "mid-body":
            # Headers promise the whole body; half of it arrives, then the connection dies.
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._hang_up()
            return
        self.wfile.write(payload)

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args) -> None:
        # http.server would print every request to stderr; _serve logs instead.
        pass


class SimulatorServer:
    """Serves a :class:`DcsSimulator` in a daemon thread; port 0 picks a free port."""

    def __init__(self, simulator: DcsSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorServer:
        """Bind and serve; raises OSError when the port is taken."""
        if self._httpd is not None:
            return self
        self._httpd = _HttpServer((self.host, self.port), self.simulator)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dcs-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
