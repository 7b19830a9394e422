"""Talking to a running emulator as real clients do: HTTPS trusting its CA, a token per API."""

from __future__ import annotations

import httpx

from emulator.server import EmulatorHandle

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXO_SCOPE = "https://outlook.office365.com/.default"
TENANT = "11111111-2222-3333-4444-555555555555"


def https(handle: EmulatorHandle) -> httpx.Client:
    """A client that trusts only the emulator's CA."""
    return httpx.Client(base_url=handle.base_url, verify=str(handle.ca_cert), timeout=10)


def token(handle: EmulatorHandle, scope: str) -> str:
    with https(handle) as http:
        response = http.post(
            f"/{TENANT}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": "quell-emulator",
                  "client_secret": "emulator-secret", "scope": scope},
        )
    response.raise_for_status()
    return response.json()["access_token"]


class Api:
    """Graph and Exchange calls with the right token, as a real client makes them."""

    def __init__(self, handle: EmulatorHandle) -> None:
        self.handle = handle
        self.http = https(handle)
        self.graph_token = token(handle, GRAPH_SCOPE)
        self.exo_token = token(handle, EXO_SCOPE)

    def graph(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.graph_token}"}
        return self.http.request(method, f"/v1.0{path}", headers=headers, **kwargs)

    def exo(self, cmdlet: str, **parameters) -> httpx.Response:
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}}
        headers = {"Authorization": f"Bearer {self.exo_token}"}
        return self.http.post(f"/adminapi/beta/{TENANT}/InvokeCommand", json=body, headers=headers)

    def state(self) -> dict:
        response = self.http.get("/_emulator/state")
        response.raise_for_status()
        return response.json()



def exo_reason(response: httpx.Response) -> str:
    """The real reason Exchange nests under its generic error message."""
    return response.json()["error"]["details"][0]["message"]
