"""Unknown ids, gateway refusals and backup download URLs, in each form the platform may answer them.

An unknown id is "gone" whether the platform says so with 2013, 1000 or HTTP 404, at once and without
retries; a gateway's own 2013 ("model must be ...") is a refusal shown in its words, never taken for a
deleted file; a ``backup_download_url`` is read when the ``download_url`` fails.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from conftest import TEST_KEY
from mounting import require_fuse

from mmfs.api.client import ApiClient
from mmfs.api.download import Downloader
from mmfs.api.retry import RetryPolicy
from mmfs.blocks.source import RemoteSource
from mmfs.emulator import Emulator
from mmfs.errors import InvalidParamsError, NotFoundError

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=10.0)


def _client(emu: Emulator, **kw) -> ApiClient:
    return ApiClient(emu.base_url, TEST_KEY, retry=FAST, **kw)


@pytest.mark.parametrize("form", ["2013", "1000", "404"])
def test_an_unknown_id_is_gone_at_once_in_every_form(emu: Emulator, form: str) -> None:
    emu.configure(unknown_id=form)
    with _client(emu) as client:
        with pytest.raises(NotFoundError) as caught:
            client.retrieve("424242")
        assert caught.value.errno == errno.ENOENT
        # A delete's 2013 stays the caller's to read (it is also the answer for a wrong purpose); the
        # filesystem reads both as "already gone".
        with pytest.raises(NotFoundError if form != "2013" else InvalidParamsError):
            client.delete("424242", "retrieval")
    assert emu.counters()["requests"]["retrieve"] == 1  # not retried: the answer is final


def test_a_gateway_refusal_is_a_refusal_in_its_words_not_a_deleted_file(emu: Emulator) -> None:
    record = emu.seed("retrieval", "kept.txt", b"still here")
    emu.configure(gateway_model=True)
    with _client(emu) as client:
        with pytest.raises(InvalidParamsError) as caught:
            client.retrieve(str(record["file_id"]))
        assert not isinstance(caught.value, NotFoundError)
        assert "model must be minimax-files-retrieve" in str(caught.value)
        assert "refused" in str(caught.value)
    with _client(emu, op_params={"retrieve": {"model": "minimax-files-retrieve"}}) as client:
        assert client.retrieve(str(record["file_id"])).filename == "kept.txt"


@pytest.mark.parametrize("form", ["extra", "primary_broken"])
def test_the_backup_download_url_is_read_when_the_download_url_fails(emu: Emulator, form: str) -> None:
    data = os.urandom(300_000)
    record = emu.seed("retrieval", "b.bin", data)
    emu.configure(backup_download_url=form)
    with _client(emu) as client:
        source = RemoteSource(client, Downloader(retry=FAST))
        assert bytes(source.fetch(str(record["file_id"]), 0, len(data))) == data
        assert bytes(source.fetch(str(record["file_id"]), 1000, 2000)) == data[1000:2000]
        assert client.backup_url(str(record["file_id"])) is not None


def test_the_emulator_answers_each_unknown_id_form(emu: Emulator) -> None:
    import requests

    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    url = f"{emu.base_url}/v1/files/retrieve"
    for form, http, code in (("2013", 200, 2013), ("1000", 200, 1000), ("404", 404, None)):
        emu.configure(unknown_id=form)
        resp = requests.get(url, params={"file_id": "99999"}, headers=headers, timeout=10)
        assert resp.status_code == http
        if code is not None:
            assert resp.json()["base_resp"]["status_code"] == code
            assert "not found" in resp.json()["base_resp"]["status_msg"]


# --- through a mount -------------------------------------------------------------------------------------


def _status(m) -> dict:
    done = subprocess.run([sys.executable, "-m", "mmfs", "status", str(m.path), "--json"], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_a_mount_shows_a_gateway_refusal_and_keeps_the_file(emulator, mount_of) -> None:
    require_fuse()
    emulator.seed("retrieval", "doc.txt", b"the text")
    with mount_of(emulator, "--retry-deadline", "2") as m:
        path = m.path / "retrieval" / "doc.txt"
        os.stat(path)
        emulator.configure(gateway_model=True)
        with pytest.raises(OSError) as caught:
            path.read_bytes()
        assert caught.value.errno == errno.EIO
        emulator.configure(gateway_model=False)
        assert "doc.txt" in os.listdir(m.path / "retrieval")  # not taken for deleted
        assert "model must be minimax-files-retrieve" in m.log()
        assert "model must be minimax-files-retrieve" in (_status(m)["last_error"] or "")
        assert path.read_bytes() == b"the text"


def test_a_mount_takes_a_1000_not_found_for_a_deleted_file(emulator, mount_of) -> None:
    import requests

    require_fuse()
    record = emulator.seed("retrieval", "gone.txt", b"soon gone")
    emulator.configure(unknown_id="1000")
    with mount_of(emulator, "--retry-deadline", "20") as m:
        path = m.path / "retrieval" / "gone.txt"
        os.stat(path)
        requests.post(f"{emulator.base_url}/v1/files/delete", json={"file_id": int(record["file_id"]),
                      "purpose": "retrieval"}, headers={"Authorization": f"Bearer {TEST_KEY}"},
                      timeout=10).raise_for_status()
        with pytest.raises(FileNotFoundError):
            path.read_bytes()
        assert "gone.txt" not in os.listdir(m.path / "retrieval")
        # Taken as final: no retries (the kernel may open it twice), far inside the 20 s deadline.
        assert emulator.counters()["requests"]["retrieve"] <= 2
