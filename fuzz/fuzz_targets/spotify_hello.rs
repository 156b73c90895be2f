//! The Spotify AP's handshake as a connection receives it (`spotify_ap::session`, through the
//! `StreamCore` contract): the length-prefixed ClientHello (protobuf), then whatever follows,
//! split anywhere (docs/protocols/spotify-ap.md, "Handshake").
//! Property: any bytes end in an answer, a close or more waiting; never a panic.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use airtwin_simulators::protocol_core::ConnInfo;
use airtwin_simulators::spotify_ap::identity::Identity;
use airtwin_simulators::spotify_ap::session::{Account, ApConfig, ApCore};
use airtwin_simulators::stream_core::{StreamConn, StreamCore};
use libfuzzer_sys::fuzz_target;

fn core() -> &'static ApCore {
    static CORE: OnceLock<ApCore> = OnceLock::new();
    CORE.get_or_init(|| {
        let identity = Identity::from_seed(1).expect("a key from the seed");
        let mut config = ApConfig::new(Arc::new(identity), 1);
        // The account of the seed session that logs in (docs/fuzzing.md, "Seeds").
        config.accounts.push(Account {
            username: "bob".into(),
            password: Some("pw".into()),
            refuse: None,
        });
        ApCore::new(Arc::new(config))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let peer: SocketAddr = "127.0.0.1:50000".parse().expect("address");
    let info = ConnInfo {
        device: "ap".into(),
        index: 0,
        peer,
        local: "127.0.0.1:4070".parse().expect("address"),
    };
    let mut conn = core().open(&info);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for piece in data.chunks(usize::from(split).max(1)) {
        conn.handle_input(piece, now);
        while conn.poll_transmit().is_some() {}
        while conn.poll_event().is_some() {}
        if conn.is_closed() {
            break;
        }
    }
    if let Some(t) = conn.poll_timeout() {
        conn.handle_timeout(t);
    }
    while conn.poll_event().is_some() {}
});
