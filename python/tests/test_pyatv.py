"""pyatv, a real third-party client, against devices that the airtwin pytest plugin serves.

Run by ci/python-wheel after it installs the wheel built from this repository.
"""

import asyncio
import io
import wave

import pytest
import pyatv
from pyatv.conf import AppleTV, ManualService
from pyatv.const import DeviceState, Protocol


async def scan_one(serve, monkeypatch, identifier):
    """pyatv's unicast scan of 127.0.0.1, answered by serve's DNS-SD responder (no multicast)."""
    monkeypatch.setenv("PYATV_UDNS_PORT", str(serve.dns_sd_port))
    found = await pyatv.scan(asyncio.get_running_loop(), hosts=["127.0.0.1"], timeout=5)
    matching = [conf for conf in found if identifier in conf.all_identifiers]
    assert matching, f"scan found {[c.all_identifiers for c in found]}, not {identifier}"
    return matching[0]


def pcm_frames(wav_bytes: bytes) -> bytes:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 44100)
        return wav.readframes(wav.getnframes())


@pytest.mark.airtwin(devices=["itunes=lib"], seed=11)
async def test_itunes_now_playing_follows_the_control_api(airtwin):
    lib = airtwin.device("lib")
    airtwin.control.set_state(
        "lib",
        now_playing={"title": "So What", "artist": "Miles Davis", "album": "Kind of Blue", "duration": 562},
        play_state="paused",
    )
    conf = AppleTV(lib.address, "lib")
    conf.add_service(ManualService("airtwin-lib", Protocol.DMAP, lib.port, {}, credentials="0x0000000000000001"))
    atv = await pyatv.connect(conf, asyncio.get_running_loop())
    try:
        playing = await atv.metadata.playing()
        assert (playing.title, playing.artist, playing.album) == ("So What", "Miles Davis", "Kind of Blue")
        assert playing.device_state == DeviceState.Paused
        airtwin.control.set_state("lib", play_state="playing")
        assert (await atv.metadata.playing()).device_state == DeviceState.Playing
    finally:
        await asyncio.gather(*atv.close())
    assert airtwin.control.state("lib")["dacp"]["logins"] == 1


async def test_raop_stream_is_received_sample_for_sample(airtwin_serve, monkeypatch, tone_wav):
    serve = airtwin_serve("airport-express=kitchen", seed=2)
    kitchen = serve.device("kitchen")
    conf = await scan_one(serve, monkeypatch, kitchen.identity["mac"].replace(":", ""))
    atv = await pyatv.connect(conf, asyncio.get_running_loop(), protocol=Protocol.RAOP)
    try:
        await atv.stream.stream_file(str(tone_wav))
    finally:
        await asyncio.gather(*atv.close())
    sent = pcm_frames(tone_wav.read_bytes())
    received = pcm_frames(serve.control.audio("kitchen"))
    assert received[: len(sent)] == sent
    assert not received[len(sent):].strip(b"\0"), "only silence may follow the WAV"
    answered = [(x["method"], x["status"]) for x in serve.control.exchanges("kitchen")]
    assert ("RECORD", 200) in answered and ("TEARDOWN", 200) in answered


async def test_a_fault_added_through_the_control_api_reaches_pyatv(airtwin_serve, monkeypatch, tone_wav):
    serve = airtwin_serve("airport-express=kitchen", seed=3)
    serve.control.add_fault({"when": {"method": "ANNOUNCE"}, "action": {"respond": {"status": 453}}, "times": 1})
    kitchen = serve.device("kitchen")
    conf = await scan_one(serve, monkeypatch, kitchen.identity["mac"].replace(":", ""))
    atv = await pyatv.connect(conf, asyncio.get_running_loop(), protocol=Protocol.RAOP)
    try:
        with pytest.raises(Exception) as refused:
            await atv.stream.stream_file(str(tone_wav))
        assert "453" in str(refused.value)
    finally:
        await asyncio.gather(*atv.close())
    [fault] = serve.control.faults()
    assert fault["applied"] == 1
    assert [x["status"] for x in serve.control.exchanges("kitchen") if x["method"] == "ANNOUNCE"] == [453]


@pytest.mark.airtwin(
    scenario={
        "name": "plugin-4k",
        "description": "an Apple TV 4K whose PIN the test reads from the fixture",
        "seed": 47,
        "devices": [{"kind": "apple-tv", "name": "tv", "identity": {"generation": "4k", "mac": "58:55:CA:1A:2B:4C"}}],
    }
)
async def test_apple_tv_4k_pairs_with_the_pin_the_fixture_shows(airtwin, monkeypatch):
    tv = airtwin.device("tv")
    assert tv.pin and len(tv.pin) == 4
    conf = await scan_one(airtwin, monkeypatch, "58:55:CA:1A:2B:4C")
    pairing = await pyatv.pair(conf, Protocol.AirPlay, asyncio.get_running_loop())
    try:
        await pairing.begin()
        pairing.pin(int(tv.pin))
        await pairing.finish()
        assert pairing.has_paired
        assert pairing.service.credentials
    finally:
        await pairing.close()
    hap = airtwin.control.state("tv")["hap"]
    assert hap["failed"] == 0 and len(hap["paired"]) == 1, hap
