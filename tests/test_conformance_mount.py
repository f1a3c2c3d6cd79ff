"""Real mounts against every form of the platform its own clients meet: each file must read back exactly.

The forms: the global host's unsigned https download links (trusted through ``--ca-bundle``), the mainland
host's signed links with ``%2F`` in the path, a gateway under a path prefix that wants ``model=`` on every
call, and gateways that give no ``download_url`` at all (read through ``retrieve_content``, whether it honours
Range or not). Also: the demo's ``video_generation`` folder, where every video is named ``output.mp4`` or
``output_aigc.mp4``, shows each one under its own stable name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY
from mounting import Mounted, require_fuse

from mmfs.emulator import Emulator, EmulatorConfig

pytestmark = pytest.mark.fuse

MiB = 1 << 20
GATEWAY_PREFIX = "/minimaxi"
OPS = ("list", "retrieve", "retrieve_content", "upload", "delete")
MODEL_PARAMS = [arg for op in OPS for arg in ("--op-param", f"{op}:model=minimax-files-{op}")]

FORMS = {
    "https-unsigned": ({"tls": True, "url_form": "unsigned"}, False),
    "oss-slash": ({"url_form": "oss_slash"}, False),
    "gateway-prefix-model": ({"path_prefix": GATEWAY_PREFIX, "gateway_model": True}, True),
    "gateway-no-download-url": (
        {"path_prefix": GATEWAY_PREFIX, "gateway_model": True, "drop_fields": "download_url"}, True
    ),
    "no-download-url-ranged": ({"drop_fields": "download_url", "content_range": True}, False),
}


@pytest.fixture(autouse=True)
def _fuse() -> None:
    require_fuse()


def _start(tmp_path: Path, settings: dict) -> Emulator:
    tls = settings.get("tls", False)
    switches = {k: v for k, v in settings.items() if k != "tls"}
    return Emulator(EmulatorConfig(data_dir=tmp_path / "platform", api_key=TEST_KEY, tls=tls, **switches)).start()


@pytest.fixture(params=sorted(FORMS))
def form(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Emulator, list[str], str]]:
    settings, gateway = FORMS[request.param]
    emu = _start(tmp_path, settings)
    extra = ["--ca-bundle", str(emu.ca_path)] if emu.ca_path else []
    base_url = emu.base_url
    if gateway:
        base_url += GATEWAY_PREFIX
        extra += MODEL_PARAMS
    try:
        yield request.param, emu, extra, base_url
    finally:
        emu.stop()


def _seed(emu: Emulator) -> dict[str, bytes]:
    """Files across purposes, with the platform's name collisions; returns relative path -> bytes."""
    first = emu.seed("video_generation", "output.mp4", os.urandom(6 * MiB + 1234), created_at=1_700_000_000)
    second = emu.seed("video_generation", "output.mp4", os.urandom(50_000), created_at=1_700_000_100)
    aigc = emu.seed("video_generation", "output_aigc.mp4", os.urandom(70_000), created_at=1_700_000_200)
    voice = emu.seed("voice_clone", "narrator.wav", os.urandom(300_000))
    text = emu.seed("t2a_async_input", "chapter.txt", b"Once upon a time.\n" * 100)
    blob = emu.store.blob_path
    return {
        "video_generation/output.mp4": blob(int(first["file_id"])).read_bytes(),
        f"video_generation/output~{second['file_id']}.mp4": blob(int(second["file_id"])).read_bytes(),
        "video_generation/output_aigc.mp4": blob(int(aigc["file_id"])).read_bytes(),
        "voice_clone/narrator.wav": blob(int(voice["file_id"])).read_bytes(),
        "t2a_async_input/chapter.txt": blob(int(text["file_id"])).read_bytes(),
    }


def test_every_file_reads_back_exactly(form, tmp_path: Path) -> None:
    name, emu, extra, base_url = form
    expected = _seed(emu)
    with Mounted(base_url, emu.api_key, tmp_path, *extra) as m:
        emu.reset_counters()
        for relative, data in expected.items():
            copy = tmp_path / "copy"
            subprocess.run(["cp", str(m.path / relative), str(copy)], check=True)
            assert copy.read_bytes() == data, f"{name}: {relative}"
            assert os.stat(m.path / relative).st_size == len(data)
        # A write goes through the same base URL and parameters.
        song = tmp_path / "song.mp3"
        song.write_bytes(b"ID3" + os.urandom(20_000))
        shutil.copyfile(song, m.path / "voice_clone" / "song.mp3")
    landed = [r for r in emu.store.all() if r.filename == "song.mp3"]
    assert len(landed) == 1 and emu.store.blob_path(landed[0].file_id).read_bytes() == song.read_bytes()
    counters = emu.counters()
    assert counters["auth_on_download"] == 0
    if "no-download-url" in name:
        assert counters["requests"]["retrieve_content"] > 0 and counters["requests"]["download"] == 0
    else:
        assert counters["requests"]["download"] > 0


def test_demo_videos_named_alike_get_stable_distinct_names(demo_emulator: Emulator, tmp_path: Path) -> None:
    emu = demo_emulator
    videos = {r.file_id: r for r in emu.store.all() if r.purpose == "video_generation"}
    outputs = sorted((r.created_at, r.file_id) for r in videos.values() if r.filename == "output.mp4")
    assert len(outputs) >= 3
    names = []
    for attempt in range(2):  # the names survive a remount
        with Mounted(emu.base_url, emu.api_key, tmp_path) as m:
            shown = sorted(os.listdir(m.path / "video_generation"))
            names.append(shown)
            assert len(shown) == len(videos) == len(set(shown))
            assert "output.mp4" in shown and "output_aigc.mp4" in shown
            for _, file_id in outputs[1:]:
                assert f"output~{file_id}.mp4" in shown
            oldest = m.path / "video_generation" / "output.mp4"
            assert oldest.read_bytes() == emu.store.blob_path(outputs[0][1]).read_bytes()
            if attempt == 0 and shutil.which("ffprobe"):  # a real video, not bytes that look like one
                probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                        "-of", "csv=p=0", str(oldest)], capture_output=True, text=True)
                assert probe.returncode == 0 and float(probe.stdout) > 0, probe.stderr
    assert names[0] == names[1]
