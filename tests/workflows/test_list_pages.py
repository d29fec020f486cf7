"""ListDossiers over a real server: newest first by keyset, so a dossier created between two
pages neither shifts nor repeats the following pages; tokens bound to their filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.workflows.v1 import workflows_service_pb2 as pb
from tests.helpers import error_reason
from tests.workflows.conftest import md, stub

KEY = "key-acme"


@pytest.mark.slow  # each CreateDossier ingests its file: ~25 s on 2 cores
async def test_list_dossiers_pages_are_stable_under_inserts(
    wf_env: Any, cleanup_servers: list[Any], tmp_path: Path
) -> None:
    env = wf_env()
    cleanup_servers.append(env)
    server = await env.start_server()
    async with grpc.aio.insecure_channel(server.address) as ch:

        async def create(i: int) -> str:
            note = pb.DossierFile(
                filename="kbis.txt", content=f"Extrait Kbis, dossier {i}, SIREN 552100554.".encode()
            )
            resp = await stub(ch).CreateDossier(
                pb.CreateDossierRequest(display_name=f"Dossier {i}", files=[note]),
                metadata=md(KEY),
            )
            return resp.dossier.name

        names = [await create(i) for i in range(4)]
        first = await stub(ch).ListDossiers(pb.ListDossiersRequest(page_size=2), metadata=md(KEY))
        assert [d.name for d in first.dossiers] == names[::-1][:2] and first.next_page_token
        await create(99)  # the newest: it must not push an old one onto the next page again
        seen = [d.name for d in first.dossiers]
        token = first.next_page_token
        while token:
            page = await stub(ch).ListDossiers(
                pb.ListDossiersRequest(page_size=2, page_token=token), metadata=md(KEY)
            )
            seen += [d.name for d in page.dossiers]
            token = page.next_page_token
        assert seen == names[::-1]
        for req, reason in (
            (
                pb.ListDossiersRequest(page_token=first.next_page_token, flow="x"),
                "INVALID_PAGE_TOKEN",
            ),
            (pb.ListDossiersRequest(page_token="%%%"), "INVALID_PAGE_TOKEN"),
            (pb.ListDossiersRequest(page_size=-1), "INVALID_PAGE_SIZE"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub(ch).ListDossiers(req, metadata=md(KEY))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(err.value) == reason
