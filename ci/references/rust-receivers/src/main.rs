//! Starts one Rust RAOP receiver on 127.0.0.1 with a given name and MAC, prints
//! `listening 127.0.0.1:PORT` once it accepts connections, and runs until it is
//! killed. Usage: `airtwin-references openairplay1|shairplay NAME MAC`
//! (MAC as `aa:bb:cc:dd:ee:ff`).
//!
//! Neither receiver advertises over mDNS here: openairplay1 is built with
//! `advertise(false)` and served on our own 127.0.0.1 listener (its `run`
//! binds `[::]`), shairplay skips registration when `CI` is set
//! (docs/peers.md, "Rust RAOP receivers").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

struct Discard;

impl openairplay1::AudioSink for Discard {
    fn write(&mut self, _pcm: &[i16]) {}
    fn flush(&mut self) {}
}

struct Handler;

struct Session;

impl shairplay::AudioSession for Session {
    fn audio_process(&mut self, _samples: &[f32]) {}
}

impl shairplay::AudioHandler for Handler {
    fn audio_init(&self, _format: shairplay::AudioFormat) -> Box<dyn shairplay::AudioSession> {
        Box::new(Session)
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("MAC {text:?} is not six colon-separated bytes"));
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(part, 16).map_err(|e| format!("MAC {text:?}: {e}"))?;
    }
    Ok(mac)
}

fn free_port() -> std::io::Result<u16> {
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(probe.local_addr()?.port())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, name, mac] = args.as_slice() else {
        return Err("usage: airtwin-references openairplay1|shairplay NAME MAC".into());
    };
    let mac = parse_mac(mac)?;
    match kind.as_str() {
        "openairplay1" => {
            let listener =
                tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            let port = listener.local_addr()?.port();
            let context = Arc::new(openairplay1::server::Context {
                config: openairplay1::Config { name: name.clone(), port, mac },
                sink_factory: Arc::new(|_rate, _channels| {
                    Box::new(Discard) as Box<dyn openairplay1::AudioSink>
                }),
                events: tokio::sync::mpsc::unbounded_channel().0,
            });
            println!("listening 127.0.0.1:{port}");
            tokio::select! {
                served = openairplay1::server::serve(listener, context) => served?,
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        "shairplay" => {
            std::env::set_var("CI", "1");
            let port = free_port()?;
            let mut server = shairplay::RaopServer::builder()
                .name(name.clone())
                .hwaddr(mac.to_vec())
                .bind(shairplay::BindConfig {
                    bind_addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                    port,
                    auto_port: false,
                })
                .build(Arc::new(Handler))?;
            server.start().await?;
            println!("listening 127.0.0.1:{port}");
            tokio::signal::ctrl_c().await?;
            server.stop().await;
        }
        other => return Err(format!("unknown reference {other:?}").into()),
    }
    Ok(())
}
