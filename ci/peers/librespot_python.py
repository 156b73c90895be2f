#!/usr/bin/env python3
"""Points librespot-python (PyPI `librespot` 0.0.10, unmodified) at airtwin's fake Spotify access
point and reports what it does, one line per step (docs/peers.md, "librespot-python").

The library pins Spotify's RSA modulus in the class attribute `Session._Session__server_key` and
takes the AP address as an argument of `Session`; its apresolve URL is the class attribute
`ApResolver.base_url`. This script sets the key to the fake AP's public key (--key, PEM text) and
the apresolve URL to the fake's (--apresolve), then runs the library's own code: apresolve,
handshake (`Session.connect`), login (`Session.__authenticate_partial`, as its `Builder` would
after apresolve) and its receiver thread, which answers the AP's Ping with a Pong. It waits for
the AP's PongAck. Each --mercury URI is then a GET through the library's `MercuryClient`, whose
status and body are printed. With --reconnect it opens a second connection and logs in with the
reusable credentials of the first APWelcome. A step that fails prints `FAILED at step <step>: <why>` and
exits 1; a missing library exits 2 naming ci/install-peers.
"""

import argparse
import os
import sys
import threading

# apresolve is on loopback: no proxy from the environment may take the request.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

try:
    from Cryptodome.PublicKey import RSA
    from librespot.core import ApResolver, Session
    from librespot.crypto import CipherPair, Packet
    from librespot.mercury import MercuryClient, RawMercuryRequest
    from librespot.proto import Authentication_pb2 as Authentication
    from librespot.proto import Connect_pb2 as Connect
except ImportError as e:
    print(f"FAILED at step start: librespot-python is not installed ({e}); run ci/install-peers")
    sys.exit(2)

out_lock = threading.Lock()


def say(line):
    with out_lock:
        print(line, flush=True)


def fail(step, why):
    say(f"FAILED at step {step}: {why}")
    os._exit(1)


def within(step, seconds, work):
    """Runs `work` in a thread and gives its result; fails the step when it raises or is not done
    in `seconds` (the library's own socket and HTTP calls have no timeout)."""
    result = {}

    def run():
        try:
            result["value"] = work()
        except BaseException as e:  # the library raises bare RuntimeError and its own classes
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        fail(step, f"no answer in {seconds:.1f} s")
    if "error" in result:
        e = result["error"]
        fail(step, f"{type(e).__name__}: {e}")
    return result.get("value")


# Command names by byte, from the library's own table.
NAMES = {v: k for k, v in vars(Packet.Type).items() if isinstance(v, bytes)}
seen = {"pong": threading.Event(), "pong_ack": threading.Event()}


def watch_frames():
    """Reports every frame the library's cipher pair sends or receives (the library is not
    changed: its two methods are wrapped)."""
    send, receive = CipherPair.send_encoded, CipherPair.receive_encoded

    def sending(self, connection, cmd, payload):
        say(f"sent {NAMES.get(cmd, cmd.hex())} ({len(payload)} bytes)")
        send(self, connection, cmd, payload)
        if cmd == Packet.Type.pong:
            seen["pong"].set()

    def receiving(self, connection):
        packet = receive(self, connection)
        say(f"received {NAMES.get(packet.cmd, packet.cmd.hex())} ({len(packet.payload)} bytes)")
        if packet.cmd == Packet.Type.pong_ack:
            seen["pong_ack"].set()
        return packet

    CipherPair.send_encoded, CipherPair.receive_encoded = sending, receiving


def open_session(ap, timeout):
    conf = Session.Configuration.Builder().set_store_credentials(False).build()
    inner = Session.Inner(Connect.DeviceType.COMPUTER, "airtwin-peer", "en", conf)
    session = within("connect", timeout, lambda: Session(inner, ap))
    say(f"ok connect: {ap}")
    within("handshake", timeout, session.connect)
    say("ok handshake: gs_signature verified with the given key, Shannon keys derived")
    return session


def log_in(session, credentials, timeout, step):
    # True: release the library's send lock after APWelcome, so its receiver can send Pong.
    within(step, timeout, lambda: session._Session__authenticate_partial(credentials, True))
    welcome = session._Session__ap_welcome
    say(
        f"ok {step}: APWelcome for {welcome.canonical_username}, "
        f"{len(welcome.reusable_auth_credentials)} bytes of reusable credentials"
    )
    return welcome


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apresolve", required=True, help="http://host:port/ of the fake apresolve")
    p.add_argument("--key", required=True, help="the fake AP's RSA public key, PEM text")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each step")
    p.add_argument("--mercury", action="append", default=[], metavar="URI",
                   help="a Mercury GET after login (repeatable)")
    p.add_argument("--reconnect", action="store_true",
                   help="then log in again on a new connection with the reusable credentials")
    args = p.parse_args()

    key = RSA.import_key(args.key)
    if key.e != 65537:
        fail("start", f"the library fixes e = 65537, the key has e = {key.e}")
    Session._Session__server_key = key.n.to_bytes((key.n.bit_length() + 7) // 8, "big")
    ApResolver.base_url = args.apresolve if args.apresolve.endswith("/") else args.apresolve + "/"
    watch_frames()

    ap = within("resolve", args.timeout, ApResolver.get_random_accesspoint)
    say(f"ok resolve: accesspoint {ap}")
    session = open_session(ap, args.timeout)
    password = Authentication.LoginCredentials(
        username=args.user,
        typ=Authentication.AuthenticationType.AUTHENTICATION_USER_PASS,
        auth_data=args.password.encode(),
    )
    welcome = log_in(session, password, args.timeout, "login")
    if not seen["pong"].wait(args.timeout):
        fail("ping", f"no Ping answered in {args.timeout:.1f} s")
    say("ok ping: the library answered the AP's Ping with a Pong")
    if not seen["pong_ack"].wait(args.timeout):
        fail("pong_ack", f"no PongAck in {args.timeout:.1f} s")
    say("ok pong_ack")
    if args.mercury:
        # `Session.authenticate` would create it, after steps that need the real service.
        mercury = MercuryClient(session)
        session._Session__mercury_client = mercury
        for uri in args.mercury:
            answer = within("mercury", args.timeout,
                            lambda: mercury.send_sync(RawMercuryRequest.get(uri)))
            say(f"ok mercury: {answer.uri} status {answer.status_code} body {answer.payload!r}")
    session.close()

    if args.reconnect:
        session = open_session(ap, args.timeout)
        stored = Authentication.LoginCredentials(
            username=welcome.canonical_username,
            typ=welcome.reusable_auth_credentials_type,
            auth_data=welcome.reusable_auth_credentials,
        )
        log_in(session, stored, args.timeout, "stored_login")
        session.close()
    say("ok done")
    # The library's receiver and scheduler threads would otherwise keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
