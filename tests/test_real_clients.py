"""The platform's own clients against the emulator: where they disagree with it, the emulator is wrong.

* ``minimax-mcp`` (PyPI, the official MCP server; a test dependency): its ``MinimaxAPIClient`` makes the file
  calls exactly as its tools do - upload with ``requests``' ``files=``, retrieve, then a plain ``requests.get``
  of the ``download_url`` - and reads errors from ``base_resp``.
* ``mmx-cli`` (npm, the official CLI): installed on first use into ``.cache/mmx-cli`` of this checkout when
  ``npm`` is on the machine (the test is skipped, with the reason, when it is not). It rewrites download URLs
  to https, so it runs against the emulator's https form, trusting its certificate via
  ``NODE_EXTRA_CA_CERTS`` (verification stays on). It lists and deletes without a purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import TEST_KEY
from minimax_mcp.client import MinimaxAPIClient
from minimax_mcp.exceptions import MinimaxAuthError, MinimaxRequestError

from mmfs.emulator import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
MMX_VERSION = "1.0.27"  # the version whose source these calls were checked against
MMX_DIR = ROOT / ".cache" / "mmx-cli"


# --- minimax-mcp ---------------------------------------------------------------------------------------------
@pytest.fixture
def mcp_client(emu: Emulator) -> Iterator[MinimaxAPIClient]:
    client = MinimaxAPIClient(TEST_KEY, emu.base_url)
    yield client
    client.session.close()


def test_mcp_upload_retrieve_and_download(emu: Emulator, mcp_client: MinimaxAPIClient, tmp_path: Path) -> None:
    sample = tmp_path / "sample.wav"
    sample.write_bytes(b"RIFF" + os.urandom(40_000))
    with open(sample, "rb") as f:  # as the voice_clone tool uploads a local file
        uploaded = mcp_client.post("/v1/files/upload", files={"file": f}, data={"purpose": "voice_clone"})
    file_id = uploaded.get("file", {}).get("file_id")
    assert file_id and uploaded["file"]["filename"] == "sample.wav"
    assert emu.store.get(int(file_id)) is not None

    for stored in (file_id, emu.seed("video_generation", "output.mp4", os.urandom(70_000))["file_id"]):
        # As the video tools fetch a result: retrieve, then GET the download_url with no key.
        answer = mcp_client.get(f"/v1/files/retrieve?file_id={stored}")
        download_url = answer.get("file", {}).get("download_url")
        assert download_url
        body = requests.get(download_url, timeout=30)
        body.raise_for_status()
        assert body.content == emu.store.blob_path(int(stored)).read_bytes()
    assert emu.counters()["requests"]["download"] == 2


@pytest.mark.parametrize("url_form", ["unsigned", "oss_slash"])
def test_mcp_downloads_every_url_form(emu: Emulator, mcp_client: MinimaxAPIClient, url_form: str) -> None:
    emu.configure(url_form=url_form)
    record = emu.seed("video_generation", "output_aigc.mp4", os.urandom(20_000))
    url = mcp_client.get(f"/v1/files/retrieve?file_id={record['file_id']}")["file"]["download_url"]
    assert ("?" not in url) if url_form == "unsigned" else ("%2F" in url)
    assert requests.get(url, timeout=30).content == emu.store.blob_path(int(record["file_id"])).read_bytes()


def test_mcp_reads_platform_errors(emu: Emulator, mcp_client: MinimaxAPIClient) -> None:
    with pytest.raises(MinimaxRequestError, match="2013"):
        mcp_client.get("/v1/files/retrieve?file_id=123456789012345")
    emu.configure(fail_status=2045, fail_status_every=1)
    with pytest.raises(MinimaxRequestError, match="2045"):
        mcp_client.get("/v1/files/list?purpose=voice_clone")
    emu.configure(fail_status=0, fail_status_every=0)
    wrong = MinimaxAPIClient("sk-api-wrong", emu.base_url)
    with pytest.raises(MinimaxAuthError):
        wrong.get("/v1/files/list?purpose=voice_clone")


def test_mcp_video_input_refusal_is_http_400(emu: Emulator, mcp_client: MinimaxAPIClient, tmp_path: Path) -> None:
    clip = tmp_path / "reference.m4a"  # the docs take wav and mp3 audio only for video generation
    clip.write_bytes(os.urandom(1000))
    with open(clip, "rb") as f, pytest.raises(MinimaxRequestError, match="400"):
        mcp_client.post("/v1/files/upload", files={"file": f}, data={"purpose": "video_generation_input"})
    assert not [r for r in emu.store.all() if r.purpose == "video_generation_input"]


# --- mmx-cli -------------------------------------------------------------------------------------------------
def _mmx() -> Path:
    """The CLI's entry point, installed into this checkout's cache on first use; skips without npm."""
    entry = MMX_DIR / "node_modules" / ".bin" / "mmx"
    if entry.exists():
        return entry
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("npm/node not installed: the official CLI (npm mmx-cli) cannot run here")
    MMX_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(MMX_DIR),
         f"mmx-cli@{MMX_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if done.returncode != 0 or not entry.exists():
        pytest.skip(f"npm could not install mmx-cli@{MMX_VERSION}: {done.stderr.strip()[-300:]}")
    return entry


@pytest.fixture
def https_emu(tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(data_dir=tmp_path / "platform", api_key=TEST_KEY, tls=True,
                                  url_form="unsigned")).start()
    try:
        yield emu
    finally:
        emu.stop()


def _run_mmx(emu: Emulator, home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    config_dir = home / ".mmx"
    config_dir.mkdir(parents=True, exist_ok=True)
    # The key in the CLI's own config file (as `mmx auth login` leaves it), not in argv.
    (config_dir / "config.json").write_text(
        json.dumps({"api_key": emu.api_key, "region": "global", "base_url": emu.base_url})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIMAX_", "HTTP", "NODE_"))}
    env.update(HOME=str(home), MMX_CONFIG_DIR=str(config_dir), NO_COLOR="1",
               NODE_EXTRA_CA_CERTS=str(emu.ca_path))
    done = subprocess.run([str(_mmx()), *argv, "--non-interactive"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"mmx {' '.join(argv)} failed ({done.returncode}): {done.stderr}{done.stdout}"
    return done


def test_mmx_cli_upload_list_download_delete_over_https(https_emu: Emulator, tmp_path: Path) -> None:
    emu = https_emu
    assert emu.base_url.startswith("https://")
    sample = tmp_path / "greeting.mp3"
    sample.write_bytes(b"ID3" + os.urandom(30_000))
    out = _run_mmx(emu, tmp_path, "file", "upload", "--file", str(sample), "--purpose", "voice_clone",
                   "--output", "json")
    uploaded = json.loads(out.stdout)
    assert uploaded["filename"] == "greeting.mp3" and uploaded["bytes"] == 30_003
    assert emu.store.blob_path(int(uploaded["file_id"])).read_bytes() == sample.read_bytes()

    video = emu.seed("video_generation", "output.mp4", os.urandom(300_000))
    listed = json.loads(_run_mmx(emu, tmp_path, "file", "list", "--output", "json").stdout)  # no purpose
    assert {str(f["file_id"]) for f in listed["files"]} == {str(uploaded["file_id"]), str(video["file_id"])}

    for url_form in ("unsigned", "oss_slash"):  # the global and the mainland download URL forms
        emu.configure(url_form=url_form)
        saved = tmp_path / f"video-{url_form}.mp4"
        _run_mmx(emu, tmp_path, "video", "download", "--file-id", str(video["file_id"]), "--out", str(saved),
                 "--output", "json")
        assert saved.read_bytes() == emu.store.blob_path(int(video["file_id"])).read_bytes(), url_form

    _run_mmx(emu, tmp_path, "file", "delete", "--file-id", str(uploaded["file_id"]), "--output", "json")
    assert emu.store.get(int(uploaded["file_id"])) is None
    counters = emu.counters()
    assert counters["requests"]["download"] == 2 and counters["auth_on_download"] == 0
