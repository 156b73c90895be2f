"""Drives the classic AirPlay video API with PyPI `airplay` 0.0.5 (docs/peers.md) in a fixed
order, so that two receivers get the same requests whatever their events say: GET /server-info,
POST /reverse (the event channel, PTTH/1.0, opened by the library's event monitor), POST /play,
GET /playback-info, GET /scrub, POST /scrub?position=1.5, POST /rate?value=0 and 1,
POST /getProperty?playbackAccessLog, GET /info, POST /stop.
Prints each answer and, at the end, the states the event channel reported. Exits 0 when every
step got an answer (a refused step is printed, not fatal: differential mode compares them), 1
when the receiver cannot be reached.

With URL `serve`, it serves a 20 s WAV of silence itself on 127.0.0.1 (port 0) and plays that,
so that a receiver that fetches the media (Kodi) really loads and plays it.

Usage: python airplay_video_steps.py HOST PORT URL|serve
"""

import functools
import http.server
import sys
import tempfile
import threading
import time
import wave

from airplay import AirPlay


def serve_silence(folder):
    with wave.open(f"{folder}/silence.wav", "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0" * 4 * 44100 * 20)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except ConnectionError:  # a player that stops reading mid-file
                pass

    handler = functools.partial(Quiet, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/silence.wav"


def step(name, call):
    try:
        print(name, repr(call()), flush=True)
    except Exception as exc:  # the library raises on a refused step (e.g. a 405 to GET /scrub)
        print(name, "failed:", type(exc).__name__, exc, flush=True)


def main():
    # The served WAV (3.5 MB) lives in a folder removed when the steps end.
    with tempfile.TemporaryDirectory(prefix="airplay-video-") as folder:
        return steps(folder)


def steps(folder):
    host, port, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if url == "serve":
        url = serve_silence(folder)
    try:
        ap = AirPlay(host, port)
    except ValueError as exc:
        print("connect failed:", exc, flush=True)
        return 1
    step("server-info", lambda: sorted(ap.server_info().keys()))
    states = []

    def drain():
        try:
            states.extend(e.get("state") for e in ap.events(block=False))
        except Exception as exc:
            print("event channel failed:", type(exc).__name__, exc, flush=True)

    drain()  # opens POST /reverse in the library's monitor process
    time.sleep(0.7)
    step("play", lambda: ap.play(url))
    time.sleep(2.0)
    step("playback-info", lambda: sorted(ap.playback_info().keys()))
    step("scrub", lambda: ap.scrub())
    step("scrub 1.5", lambda: ap.scrub(1.5))
    step("rate 0", lambda: ap.rate(0))
    time.sleep(0.5)
    step("rate 1", lambda: ap.rate(1))
    time.sleep(0.5)
    # The library has no getProperty (binary plists); its own request function sends it.
    step("getProperty", lambda: ap._command("/getProperty?playbackAccessLog", "POST"))
    step("info", lambda: ap._command("/info"))
    step("stop", lambda: ap.stop())
    time.sleep(1.0)
    drain()
    print("events", ", ".join(str(s) for s in states), flush=True)
    ap.event_control.put(True)
    ap.event_monitor.join(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
