"""One answer, one meaning, by either door: ``retrieve_content`` is read by the ``ApiClient`` (a whole file)
and by the ``Downloader`` (ranges, for gateways that give no ``download_url``); both read its answers through
``mmfs.api.answers``, so an unknown id is gone at once in every form the platform may say it, and a gateway's
own refusal is a refusal in its words, never a deleted file."""

from __future__ import annotations

import errno

import pytest
from conftest import TEST_KEY

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.emulator import Emulator
from mmfs.errors import InvalidParamsError, MmfsError, NotFoundError

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=10.0)


def _client(emu: Emulator, **kw) -> ApiClient:
    return ApiClient(emu.base_url, TEST_KEY, retry=FAST, **kw)


def _through_the_client(client: ApiClient, file_id: str) -> bytes:
    return b"".join(client.retrieve_content(file_id))


def _through_the_downloader(client: ApiClient, file_id: str) -> bytes:
    with Downloader(retry=FAST, content_auth=client.content_auth()) as downloader:
        return b"".join(downloader.iter_range(client.content_url(file_id), 0, 10))


DOORS = [_through_the_client, _through_the_downloader]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("form", ["2013", "1000", "404"])
def test_a_file_gone_from_retrieve_content_is_gone_at_once(emu: Emulator, form: str, door) -> None:
    file_id = str(emu.seed("retrieval", "gone.txt", b"soon deleted")["file_id"])
    emu.store.delete(int(file_id))
    emu.configure(unknown_id=form)
    with _client(emu) as client, pytest.raises(NotFoundError) as caught:
        door(client, file_id)
    assert caught.value.errno == errno.ENOENT
    assert emu.counters()["requests"]["retrieve_content"] == 1  # not retried: the answer is final


@pytest.mark.parametrize("door", DOORS)
def test_a_gateway_refusal_of_retrieve_content_is_not_a_deleted_file(emu: Emulator, door) -> None:
    file_id = str(emu.seed("retrieval", "kept.txt", b"still here")["file_id"])
    emu.configure(gateway_model=True)
    # The gateway's model parameter given for retrieve only: its retrieve_content refuses with its own 2013.
    gateway = {"retrieve": {"model": "minimax-files-retrieve"}}
    with _client(emu, op_params=gateway) as client, pytest.raises(MmfsError) as caught:
        door(client, file_id)
    assert type(caught.value) is InvalidParamsError and caught.value.errno == errno.EINVAL
    assert "model must be minimax-files-retrieve_content" in str(caught.value)
    assert emu.store.get(int(file_id)) is not None
