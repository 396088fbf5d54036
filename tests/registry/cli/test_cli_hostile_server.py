"""The CLI against a server that answers like no registry would: a group without its send
parameters or its deployment (chain id, registry contract), or with values of the wrong type. ``zkid send`` and ``zkid authorize`` end
with one error line and exit 2 (the SDK's ``bad_response``), not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.registry.cli.test_cli_errors import _identity_file, _one_error_line, zkid
from tests.support.net import serve_app

GROUPS: list[Any] = [
    [],
    {},
    {"epoch_length": "600", "message_limit": 100},
    {"epoch_length": 600, "message_limit": [100]},
    {"epoch_length": 0, "message_limit": 100},
    {"epoch_length": True, "message_limit": 100},
    # The deployment the scope must name (LZE2, docs/authorization.md): missing (a registry
    # from before LZE2), or not a chain id and an address.
    {"epoch_length": 600, "message_limit": 100},
    {"epoch_length": 600, "message_limit": 100, "chain_id": 0, "registry_contract": "0x" + "11" * 20},
    {"epoch_length": 600, "message_limit": 100, "chain_id": "31337", "registry_contract": "0x" + "11" * 20},
    {"epoch_length": 600, "message_limit": 100, "chain_id": 31337, "registry_contract": "0x" + "11" * 19},
]


def _server(group: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/groups/{group_id}")
    def get_group(group_id: int) -> JSONResponse:
        return JSONResponse(group)

    return app


@pytest.mark.parametrize("group", GROUPS, ids=range(len(GROUPS)))
def test_send_and_authorize_refuse_unusable_group_parameters_in_one_line(tmp_path: Path, group: Any) -> None:
    _, identity = _identity_file(tmp_path, "cli-hostile")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"encrypted blob")
    with serve_app(_server(group)) as url:
        authorize = zkid("authorize", "--url", url, "--identity", str(identity), "--blob", str(blob))
        send = zkid(
            "send", "--relay", url, "--registry", url, "--identity", str(identity), "--blob", str(blob),
            "--mailbox", "ab" * 32, "--pickup-secret", str(tmp_path / "secret"),
        )
    for out in (authorize, send):
        assert out.returncode == 2, out.stderr
        _one_error_line(out)
