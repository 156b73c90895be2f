//! Test fixtures shared by the cores' unit tests: a connection, an RTSP request, the L16 SDP pyatv
//! announces (docs/peers.md), and a driver that runs one request through a core the way the
//! shell does, with UDP ports faked as numbers.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::fault::CoreParams;
use crate::protocol_core::{ConnInfo, Context, Note, Outcome, ProtocolCore};
use crate::wire::{Protocol, Request, Response};

/// An ANNOUNCE body for clear big-endian 16-bit stereo PCM, as pyatv sends it.
pub const SDP_L16: &str = "v=0\r\no=x 1 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/44100/2\r\na=fmtp:96 352\r\n";

/// Connection `index` of `device`, from 127.0.0.1:40000 to 127.0.0.1:`local_port`.
pub fn conn(device: &str, index: u64, local_port: u16) -> ConnInfo {
    ConnInfo {
        device: device.into(),
        index,
        peer: "127.0.0.1:40000".parse::<SocketAddr>().expect("address"),
        local: SocketAddr::from(([127, 0, 0, 1], local_port)),
    }
}

/// An RTSP/1.0 request with a CSeq.
pub fn rtsp(method: &str, uri: &str, cseq: u32) -> Request {
    let mut r = Request::new(method, uri, Protocol::Rtsp10);
    r.headers.set("CSeq", cseq.to_string());
    r
}

/// Gives `r` the body and headers a sender puts on `method` in a stream (docs/peers.md): the L16
/// SDP on ANNOUNCE, a record-mode `Transport` on SETUP, a volume on SET_PARAMETER and
/// GET_PARAMETER; other methods stay bare.
pub fn body_for(method: &str, r: &mut Request) {
    match method {
        "ANNOUNCE" => {
            r.headers.set("Content-Type", "application/sdp");
            r.body = SDP_L16.as_bytes().to_vec();
        }
        "SETUP" => r.headers.set(
            "Transport",
            "RTP/AVP/UDP;unicast;mode=record;control_port=1;timing_port=2",
        ),
        "SET_PARAMETER" => {
            r.headers.set("Content-Type", "text/parameters");
            r.body = b"volume: -11.5\r\n".to_vec();
        }
        "GET_PARAMETER" => {
            r.headers.set("Content-Type", "text/parameters");
            r.body = b"volume\r\n".to_vec();
        }
        _ => {}
    }
}

/// Runs one request through `svc`: the response and the core's notes. SETUP's UDP ports are
/// 6000-6002; a core that defers its answer fails the test.
pub fn drive<S: ProtocolCore>(
    svc: &S,
    c: &mut S::Conn,
    info: &ConnInfo,
    r: &Request,
    params: &CoreParams,
    now: SystemTime,
) -> (Response, Vec<Note>) {
    let mut cx = Context::new(info, now, params);
    let resp = match svc.handle(c, r, &mut cx) {
        Outcome::Respond(x) | Outcome::RespondAndClose(x) | Outcome::Reverse(x) => x,
        Outcome::OpenUdp(reqs) => {
            assert_eq!(
                reqs.len(),
                3,
                "RAOP SETUP opens audio, control and timing ports"
            );
            svc.complete(c, r, &[6000, 6001, 6002], &mut cx)
        }
        Outcome::OpenPorts(reqs) => {
            let ports: Vec<u16> = (0..reqs.len() as u16).map(|i| 6000 + i).collect();
            svc.complete(c, r, &ports, &mut cx)
        }
        Outcome::Wait { .. } => panic!("this core answers at once"),
    };
    (resp, cx.notes)
}
