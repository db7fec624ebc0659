"""A small async Kubernetes API client for the few calls kopf does not make for us.

kopf watches and patches the FleetSimulations; creating Jobs, reading Secrets,
listing pods and patching a parent's status from a Job event need our own calls.
Credentials come from the same kopf.ConnectionInfo the operator logged in with.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import kopf

from greenlane.operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 30.0
MERGE_PATCH: Final = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth trying again later: unreachable, overloaded, or not (yet) allowed."""
        return self.status in (0, 401, 403, 408, 429) or self.status >= 500


def _pem(data: str | bytes) -> bytes:
    """kubeconfig *-data fields are base64 of PEM; accept raw PEM too."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----") else base64.b64decode(raw)


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """TLS settings of a ConnectionInfo; False for plain http (tests, kubectl proxy)."""
    if not info.server.startswith("https://"):
        return False
    context = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None,
        cadata=_pem(info.ca_data).decode() if info.ca_data else None,
    )
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if info.certificate_path or info.certificate_data:
        # ssl loads client certificates from files only: spill *-data into a private temp dir.
        with tempfile.TemporaryDirectory() as tmp:
            cert = info.certificate_path
            key = info.private_key_path
            if info.certificate_data:
                cert = os.path.join(tmp, "cert.pem")
                with open(cert, "wb") as f:
                    f.write(_pem(info.certificate_data))
            if info.private_key_data:
                key = os.path.join(tmp, "key.pem")
                with open(key, "wb") as f:
                    f.write(_pem(info.private_key_data))
            assert cert is not None
            context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


class KubeClient:
    """JSON over HTTP to the API server; errors become ApiError, never a traceback."""

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo | None]) -> None:
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self._info: kopf.ConnectionInfo | None = None

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        info = self._credentials()
        if info is None:
            raise ApiError(0, "NotLoggedIn", "no Kubernetes credentials yet")
        if self._session is None or info is not self._info:
            if self._session is not None:
                # Credentials were refreshed (kopf logged in again): new TLS settings maybe.
                asyncio.get_running_loop().create_task(self._session.close())
            connector = aiohttp.TCPConnector(ssl=ssl_context(info))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            )
            self._info = info
        return self._session, info

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        session, info = self._ensure_session()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = (
            aiohttp.BasicAuth(info.username, info.password or "")
            if info.username and not info.token
            else None
        )
        url = info.server.rstrip("/") + path
        try:
            async with session.request(
                method, url, json=body, params=params, headers=headers, auth=auth
            ) as resp:
                text = await resp.text()
                data = json.loads(text) if text.strip() else {}
                if resp.status >= 400:
                    details = data if isinstance(data, dict) else {}
                    raise ApiError(
                        resp.status,
                        str(details.get("reason") or resp.reason or "Error"),
                        str(details.get("message") or resp.reason or ""),
                    )
                return data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(0, type(exc).__name__, f"{method} {path}: {exc}") from exc

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """Objects whose labels match; filtered here too, so a lax server changes nothing."""
        query = ",".join(f"{k}={v}" for k, v in selector.items())
        data = await self.request("GET", path, params={"labelSelector": query})
        items = data.get("items") or []
        return [
            item
            for item in items
            if all(
                ((item.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in selector.items()
            )
        ]

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, *, propagation: str = "Background") -> bool:
        """Delete with dependents (Background: pods go after the Job); False if already gone."""
        try:
            await self.request("DELETE", path, params={"propagationPolicy": propagation})
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def q(part: str) -> str:
    return quote(part, safe="")


def jobs_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{q(namespace)}/jobs"
    return base if name is None else f"{base}/{q(name)}"


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{q(namespace)}/pods"


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{q(namespace)}/secrets/{q(name)}"


def fleetsimulation_path(namespace: str, name: str, subresource: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{q(namespace)}/{PLURAL}/{q(name)}"
    return base if subresource is None else f"{base}/{subresource}"
