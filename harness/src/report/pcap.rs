//! `airtwin run --pcap DIR`: each scenario's TCP exchanges as a pcapng capture that Wireshark
//! and tshark dissect (RTSP, HTTP, and DAAP/DMAP bodies by content type).
//!
//! The packets are synthesised from the recorded events (the same ones the transcript shows):
//! the device's address and listening port, the client's real address and port, a three-way
//! handshake when the connection was accepted, each request and response rebuilt from its start
//! line, headers and body (requests as received, responses as sent after faults), and FIN (or RST
//! for a reset) when it closed. Sequence and acknowledgement numbers follow the bytes, so
//! Wireshark reassembles messages spanning several segments. Link type: raw IP (LINKTYPE_RAW,
//! 101: <https://www.tcpdump.org/linktypes.html>); format: pcapng
//! (<https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html>).
//!
//! A HomeKit-paired connection is encrypted on the wire after the `encrypted channel: on` note
//! (docs/protocols/hap.md, "The encrypted channel"). The events hold its plaintext only, so
//! `<name>.pcapng` carries such a connection up to that point, and `<name>.decrypted.pcapng`
//! carries every encrypted connection whole, in plaintext.
//!
//! Interleaved RTP frames (RFC 2326 §10.12: a TCP sender's audio, docs/protocols/raop.md "RTP over
//! TCP") are not in the events as bytes either: with `--pcap` the connection logs each frame it
//! took, and the capture puts it into that connection's flow among its requests; where the audio
//! was encrypted, the second file carries the connection whole with each frame decrypted.
//!
//! UDP datagrams (RTP audio, sync, retransmits, timing) are not in the events as bytes: with
//! `--pcap` the run logs them as they crossed the device's sockets ([`WirePacket`], within the
//! log's budget), with their real addresses and ports; the wire file carries them as they were
//! (AES-CBC or ChaCha20-Poly1305 payloads encrypted), and when any was encrypted the decrypted
//! file carries them all, each decrypted where it was (docs/protocols/raop.md, "Audio
//! encryption"). Byte-stream connections (the Spotify access point) are logged the same way:
//! the bytes as they crossed the socket go to the first file, and the plaintext the core reports
//! (hello packets, then each Shannon frame as command, length and payload) to the second. The
//! events do not say which port of a device with
//! several (an Apple TV's AirPlay and DACP ports) a connection reached: the request's `Host`
//! port decides when it names one, else DACP paths (docs/protocols/dacp.md) go to `dacp` and
//! the rest to the device's first other port.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use airtwin_simulators::event::{Event, EventKind};
use airtwin_simulators::packet_log::{Transport, WirePacket};
use etherparse::PacketBuilder;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use crate::engine::ScenarioResult;

/// TCP payload bytes per synthesised segment (loopback's MTU is 65536).
const SEGMENT: usize = 16_384;

use airtwin_simulators::connection::ENCRYPTED_CHANNEL_ON as ENCRYPTED_ON;

/// Errors of [`write`].
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Pcap(PathBuf, pcap_file::PcapError),
    #[error("building a packet: {0}")]
    Packet(String),
}

/// One synthesised packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Duration,
    pub data: Vec<u8>,
    pub comment: Option<String>,
}

/// The packets of one scenario: in clear, and the plaintext of encrypted connections.
#[derive(Debug, Default)]
pub struct Capture {
    pub clear: Vec<Packet>,
    pub decrypted: Vec<Packet>,
}

/// Writes `DIR/<name>.pcapng` (and `DIR/<name>.decrypted.pcapng` when a connection was
/// encrypted); `addresses` gives each device's IP (default 127.0.0.1). Returns the files written.
pub fn write(
    dir: &Path,
    result: &ScenarioResult,
    addresses: &HashMap<String, IpAddr>,
) -> Result<Vec<PathBuf>, PcapError> {
    std::fs::create_dir_all(dir).map_err(|e| PcapError::Io(dir.to_path_buf(), e))?;
    let capture = capture(&result.events, &result.packets.packets, addresses)?;
    // The recorder's clock starts with the scenario; the wall-clock start is the end of the run
    // minus its duration.
    let start = SystemTime::now()
        .checked_sub(result.duration)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut written = Vec::new();
    let clear = dir.join(format!("{}.pcapng", result.name));
    let mut about = format!(
        "airtwin scenario {}, synthesised from its events",
        result.name
    );
    if result.packets.dropped > 0 {
        let _ = write!(
            about,
            "; the {} oldest logged datagrams and stream reads were dropped for the packet log's budget",
            result.packets.dropped
        );
    }
    write_file(&clear, &capture.clear, start, &about)?;
    written.push(clear);
    if !capture.decrypted.is_empty() {
        let decrypted = dir.join(format!("{}.decrypted.pcapng", result.name));
        write_file(&decrypted, &capture.decrypted, start, &about)?;
        written.push(decrypted);
    }
    Ok(written)
}

fn write_file(
    path: &Path,
    packets: &[Packet],
    start: Duration,
    about: &str,
) -> Result<(), PcapError> {
    let pcap = |e| PcapError::Pcap(path.to_path_buf(), e);
    let file = std::fs::File::create(path).map_err(|e| PcapError::Io(path.to_path_buf(), e))?;
    let mut writer = PcapNgWriter::new(std::io::BufWriter::new(file)).map_err(pcap)?;
    writer
        .write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::RAW,
            snaplen: 0,
            options: vec![
                InterfaceDescriptionOption::IfName("airtwin".into()),
                // pcap-file writes timestamps in nanoseconds: if_tsresol 9 (10^-9 s).
                InterfaceDescriptionOption::IfTsResol(9),
                InterfaceDescriptionOption::IfDescription(about.into()),
            ],
        })
        .map_err(pcap)?;
    for p in packets {
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: start + p.at,
                original_len: p.data.len() as u32,
                data: p.data.as_slice().into(),
                options: p
                    .comment
                    .iter()
                    .map(|c| EnhancedPacketOption::Comment(c.as_str().into()))
                    .collect(),
            })
            .map_err(pcap)?;
    }
    std::io::Write::flush(&mut writer.into_inner())
        .map_err(|e| PcapError::Io(path.to_path_buf(), e))
}

/// The state of one synthesised TCP connection.
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence numbers of the client and the server.
    client_seq: u32,
    server_seq: u32,
    opened: bool,
    encrypted: bool,
    /// Whether the connection was encrypted at any point (then it goes whole to the second file).
    ever_encrypted: bool,
    /// Its packets, each marked whether it was in clear on the wire.
    packets: Vec<(bool, Packet)>,
    /// For the second file, packets that read otherwise decrypted (by index in `packets`): the
    /// interleaved RTP frames whose audio was encrypted.
    decrypted_instead: HashMap<usize, Packet>,
}

impl Flow {
    /// A new connection between `client` and `server`, with nothing sent yet.
    fn new(client: SocketAddr, server: SocketAddr) -> Flow {
        Flow {
            client,
            server,
            // Initial sequence numbers: any value (RFC 9293 §3.4.1); fixed, so that captures of
            // the same run compare equal.
            client_seq: 1_000,
            server_seq: 5_000,
            opened: false,
            encrypted: false,
            ever_encrypted: false,
            packets: Vec::new(),
            decrypted_instead: HashMap::new(),
        }
    }

    /// Whether the second file carries this connection whole: it was encrypted at some point.
    fn goes_decrypted(&self) -> bool {
        self.ever_encrypted || !self.decrypted_instead.is_empty()
    }

    /// An interleaved frame from the client (RFC 2326 §10.12), and how it reads decrypted. A
    /// decrypted frame of another length than the wire's would break the second file's sequence
    /// numbers: it keeps the wire's bytes then.
    fn frame(&mut self, at: Duration, wire: &[u8], plain: Option<&[u8]>) -> Result<(), PcapError> {
        self.open(at)?;
        let plain = plain.filter(|p| p.len() == wire.len() && *p != wire);
        let decrypted = plain.map(|p| self.build(true, Flags::ACK, p)).transpose()?;
        self.segment(at, true, Flags::ACK, wire, None)?;
        if let Some(data) = decrypted {
            let packet = Packet {
                at,
                data,
                comment: None,
            };
            self.decrypted_instead
                .insert(self.packets.len() - 1, packet);
        }
        Ok(())
    }

    /// The next segment's bytes, without sending it.
    fn build(&self, from_client: bool, flags: Flags, payload: &[u8]) -> Result<Vec<u8>, PcapError> {
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let (seq, ack) = if from_client {
            (self.client_seq, self.server_seq)
        } else {
            (self.server_seq, self.client_seq)
        };
        let builder = ip(src.ip(), dst.ip()).tcp(src.port(), dst.port(), seq, 65_535);
        let builder = if flags.syn { builder.syn() } else { builder };
        let builder = if flags.fin { builder.fin() } else { builder };
        let builder = if flags.rst { builder.rst() } else { builder };
        let builder = if !payload.is_empty() {
            builder.psh()
        } else {
            builder
        };
        let builder = if flags.ack { builder.ack(ack) } else { builder };
        let mut data = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut data, payload)
            .map_err(|e| PcapError::Packet(e.to_string()))?;
        Ok(data)
    }

    fn segment(
        &mut self,
        at: Duration,
        from_client: bool,
        flags: Flags,
        payload: &[u8],
        comment: Option<String>,
    ) -> Result<(), PcapError> {
        let data = self.build(from_client, flags, payload)?;
        let advance = payload.len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
        if from_client {
            self.client_seq = self.client_seq.wrapping_add(advance);
        } else {
            self.server_seq = self.server_seq.wrapping_add(advance);
        }
        self.packets
            .push((!self.encrypted, Packet { at, data, comment }));
        Ok(())
    }

    fn open(&mut self, at: Duration) -> Result<(), PcapError> {
        if self.opened {
            return Ok(());
        }
        self.opened = true;
        self.segment(at, true, Flags::SYN, &[], None)?;
        self.segment(
            at,
            false,
            Flags {
                ack: true,
                ..Flags::SYN
            },
            &[],
            None,
        )?;
        self.segment(at, true, Flags::ACK, &[], None)
    }

    /// FIN from the device, the peer's FIN and the last ACK; RST for a reset.
    fn close(&mut self, at: Duration, reason: &str) -> Result<(), PcapError> {
        self.open(at)?;
        if reason.contains("reset") {
            let flags = Flags {
                rst: true,
                ..Flags::ACK
            };
            return self.segment(at, false, flags, &[], Some(reason.to_string()));
        }
        let fin = Flags {
            fin: true,
            ..Flags::ACK
        };
        self.segment(at, false, fin, &[], Some(reason.to_string()))?;
        self.segment(at, true, fin, &[], None)?;
        self.segment(at, false, Flags::ACK, &[], None)
    }

    fn message(
        &mut self,
        at: Duration,
        from_client: bool,
        bytes: &[u8],
        comment: Option<String>,
    ) -> Result<(), PcapError> {
        self.open(at)?;
        let mut comment = comment;
        for chunk in bytes.chunks(SEGMENT) {
            self.segment(at, from_client, Flags::ACK, chunk, comment.take())?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Default)]
struct Flags {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}

impl Flags {
    const SYN: Flags = Flags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    const ACK: Flags = Flags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
}

/// An IP header from `src` to `dst` (IPv6 when either is, IPv4-mapped for the other).
fn ip(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        _ => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            PacketBuilder::ipv6(v6(src), v6(dst), 64)
        }
    }
}

/// A request or response as bytes: start line, headers, blank line, body.
fn rebuild(start: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{start}\r\n");
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// DACP's paths (docs/protocols/dacp.md): the DACP port's, not AirPlay's.
fn is_dacp_path(uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or(uri);
    [
        "/login",
        "/logout",
        "/update",
        "/ctrl-int",
        "/databases",
        "/server-info",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// A connection's first request: its URI, protocol and headers.
type FirstRequest<'a> = (&'a str, &'a str, &'a [(String, String)]);

/// Which of the device's listening ports a connection whose first request is this one reached.
fn server_port(services: &[(String, u16)], first: Option<FirstRequest<'_>>) -> u16 {
    match services {
        [] => 0,
        [(_, port)] => *port,
        _ => {
            let Some((uri, protocol, headers)) = first else {
                return services[0].1;
            };
            let host_port = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                .and_then(|(_, v)| v.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .filter(|p| services.iter().any(|(_, s)| s == p));
            if let Some(p) = host_port {
                return p;
            }
            let dacp = services.iter().find(|(s, _)| s == "dacp").map(|(_, p)| *p);
            let other = services
                .iter()
                .find(|(s, _)| s != "dacp")
                .map(|(_, p)| *p)
                .unwrap_or(services[0].1);
            match dacp {
                Some(d) if protocol.starts_with("HTTP/") && is_dacp_path(uri) => d,
                _ => other,
            }
        }
    }
}

/// A UDP datagram from `from` to `to` as a raw IP packet.
fn udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, PcapError> {
    let builder = ip(from.ip(), to.ip()).udp(from.port(), to.port());
    let mut data = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut data, payload)
        .map_err(|e| PcapError::Packet(e.to_string()))?;
    Ok(data)
}

/// The logged UDP datagrams: as they were on the wire in the first file; when any of them was
/// encrypted (RAOP's AES-CBC audio, AirPlay 2's sealed audio), all of them in the second file,
/// each decrypted where it was encrypted, so that file holds the streams whole. The first
/// datagram to each port carries a comment naming the tshark option that decodes the port as RTP
/// (RAOP's ports are picked at SETUP, so no dissector claims them by number).
fn datagrams(packets: &[WirePacket], capture: &mut Capture) -> Result<(), PcapError> {
    let udp_packets = || packets.iter().filter(|p| p.transport == Transport::Udp);
    let any_plain = udp_packets().any(|p| p.plain.is_some());
    let mut hinted = std::collections::HashSet::new();
    for p in udp_packets() {
        let Some(wire) = &p.wire else { continue };
        let mut comment = p.note.clone();
        if hinted.insert(p.to.port()) {
            let hint = format!(
                "airtwin: decode as RTP with -d udp.port=={},rtp",
                p.to.port()
            );
            comment = Some(match comment {
                Some(c) => format!("{c}; {hint}"),
                None => hint,
            });
        }
        capture.clear.push(Packet {
            at: p.at,
            data: udp(p.from, p.to, wire)?,
            comment: comment.clone(),
        });
        if any_plain {
            capture.decrypted.push(Packet {
                at: p.at,
                data: udp(p.from, p.to, p.plain.as_deref().unwrap_or(wire))?,
                comment,
            });
        }
    }
    Ok(())
}

/// What happens on a byte-stream connection, in time order.
enum StreamStep<'a> {
    Open,
    Bytes(&'a WirePacket),
    /// A fault struck: a comment where it did.
    Fault(String),
    Close(&'a str),
}

/// The byte-stream connections (`streams`: the Spotify access point, Companion, AirPlay 2's
/// event and buffered-audio channels) whose bytes were logged: the first file carries what
/// crossed the wire (hello packets, then Shannon-encrypted frames), the second, for a core that
/// reported its plaintext, each message in clear (the hello packets, then each frame as command
/// byte, 2-byte big-endian length and payload; docs/protocols/spotify-ap.md "Shannon frames"),
/// on a connection with the same addresses and ports. The handshake and the close come from the
/// connection's `connected` and `closed` events, and a fault is a comment where it struck.
fn streams(
    events: &[Event],
    packets: &[WirePacket],
    streams: &std::collections::HashSet<(&str, u64, SocketAddr)>,
    capture: &mut Capture,
) -> Result<(), PcapError> {
    let mut streams: Vec<_> = streams.iter().copied().collect();
    streams.sort();
    for (device, index, peer) in streams {
        let logged: Vec<&WirePacket> = packets
            .iter()
            .filter(|p| {
                p.transport == Transport::Tcp
                    && &*p.device == device
                    && (p.from == peer || p.to == peer)
            })
            .collect();
        let Some(local) = logged
            .first()
            .map(|p| if p.from == peer { p.to } else { p.from })
        else {
            continue;
        };
        let mut steps: Vec<(Duration, StreamStep)> = events
            .iter()
            .filter(|e| e.device == device && e.connection == Some(index) && e.peer == Some(peer))
            .filter_map(|e| match &e.kind {
                EventKind::Connected => Some((e.at, StreamStep::Open)),
                EventKind::Closed { reason } => Some((e.at, StreamStep::Close(reason))),
                EventKind::Fault { fault, action, .. } => Some((
                    e.at,
                    StreamStep::Fault(format!("airtwin faults[{fault}] {action}")),
                )),
                _ => None,
            })
            .chain(logged.iter().map(|p| (p.at, StreamStep::Bytes(p))))
            .collect();
        // The recorder stamps events and logged packets with one clock; a stable sort keeps
        // the order of each.
        steps.sort_by_key(|(at, _)| *at);
        let flow = || Flow::new(peer, local);
        let (mut wire, mut plain) = (flow(), flow());
        let has_plain = logged.iter().any(|p| p.plain.is_some());
        for (at, step) in steps {
            for (flow, is_plain) in [(&mut wire, false), (&mut plain, true)] {
                match step {
                    StreamStep::Open => flow.open(at)?,
                    StreamStep::Bytes(p) => {
                        let bytes = if is_plain { &p.plain } else { &p.wire };
                        if let Some(bytes) = bytes {
                            flow.message(at, p.from == peer, bytes, p.note.clone())?;
                        }
                    }
                    StreamStep::Fault(ref comment) if flow.opened => {
                        flow.segment(at, false, Flags::ACK, &[], Some(comment.clone()))?
                    }
                    StreamStep::Fault(_) => {}
                    StreamStep::Close(reason) => flow.close(at, reason)?,
                }
            }
        }
        capture
            .clear
            .extend(wire.packets.into_iter().map(|(_, p)| p));
        if has_plain {
            capture
                .decrypted
                .extend(plain.packets.into_iter().map(|(_, p)| p));
        }
    }
    Ok(())
}

/// The packets of a scenario's events and logged packets.
pub fn capture(
    events: &[Event],
    packets: &[WirePacket],
    addresses: &HashMap<String, IpAddr>,
) -> Result<Capture, PcapError> {
    let mut services: HashMap<&str, Vec<(String, u16)>> = HashMap::new();
    for e in events {
        if let EventKind::Listening { service, port } = &e.kind {
            services
                .entry(e.device.as_str())
                .or_default()
                .push((service.clone(), *port));
        }
    }
    // Connections by (device, index, peer): each listener counts its own connections.
    type Key<'a> = (&'a str, u64, SocketAddr);
    let mut first_request: HashMap<Key, FirstRequest> = HashMap::new();
    let mut byte_stream: std::collections::HashSet<Key> = Default::default();
    for e in events {
        let (Some(c), Some(peer)) = (e.connection, e.peer) else {
            continue;
        };
        if let EventKind::Request {
            uri,
            protocol,
            headers,
            ..
        } = &e.kind
        {
            let key = (e.device.as_str(), c, peer);
            if !(protocol.starts_with("RTSP/") || protocol.starts_with("HTTP/")) {
                byte_stream.insert(key);
            }
            first_request.entry(key).or_insert((
                uri.as_str(),
                protocol.as_str(),
                headers.as_slice(),
            ));
        }
    }

    let mut flows: Vec<(Key, Flow)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    // The other logged TCP packets are interleaved RTP frames read on request-driven connections
    // (docs/protocols/raop.md, "RTP over TCP"): they go into their connection's flow where they
    // arrived among its requests. The recorder stamps events and packets with one clock.
    let stream_peers: std::collections::HashSet<(&str, SocketAddr)> =
        byte_stream.iter().map(|(d, _, p)| (*d, *p)).collect();
    let frames = packets.iter().filter(|p| {
        p.transport == Transport::Tcp
            && p.wire.is_some()
            && !stream_peers.contains(&(&*p.device, p.from))
            && !stream_peers.contains(&(&*p.device, p.to))
    });
    let mut steps: Vec<(Duration, Result<&Event, &WirePacket>)> = events
        .iter()
        .map(|e| (e.at, Ok(e)))
        .chain(frames.map(|p| (p.at, Err(p))))
        .collect();
    steps.sort_by_key(|(at, _)| *at);
    let mut by_peer: HashMap<(&str, SocketAddr), usize> = HashMap::new();
    for (_, step) in steps {
        let e = match step {
            Ok(e) => e,
            Err(p) => {
                if let Some(&i) = by_peer.get(&(&*p.device, p.from)) {
                    let wire = p.wire.as_deref().unwrap_or_default();
                    flows[i].1.frame(p.at, wire, p.plain.as_deref())?;
                }
                continue;
            }
        };
        let (Some(c), Some(peer)) = (e.connection, e.peer) else {
            continue;
        };
        let key = (e.device.as_str(), c, peer);
        if byte_stream.contains(&key) {
            continue;
        }
        let i = *index.entry(key).or_insert_with(|| {
            let device_ip = addresses
                .get(&e.device)
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let port = server_port(
                services
                    .get(e.device.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                first_request.get(&key).copied(),
            );
            flows.push((key, Flow::new(peer, SocketAddr::new(device_ip, port))));
            flows.len() - 1
        });
        by_peer.insert((e.device.as_str(), peer), i);
        let flow = &mut flows[i].1;
        match &e.kind {
            EventKind::Connected => flow.open(e.at)?,
            EventKind::Request {
                method,
                uri,
                protocol,
                headers,
                body,
                ..
            } => flow.message(
                e.at,
                true,
                &rebuild(&format!("{method} {uri} {protocol}"), headers, body),
                None,
            )?,
            EventKind::Response {
                status,
                reason,
                headers,
                body,
                ..
            } => {
                let protocol = first_request
                    .get(&key)
                    .map(|(_, p, _)| *p)
                    .unwrap_or("HTTP/1.1");
                flow.message(
                    e.at,
                    false,
                    &rebuild(&format!("{protocol} {status} {reason}"), headers, body),
                    None,
                )?
            }
            // Shown as a comment on an empty ACK from the device, where it struck.
            EventKind::Fault { fault, action, .. } if flow.opened => {
                flow.segment(
                    e.at,
                    false,
                    Flags::ACK,
                    &[],
                    Some(format!("airtwin faults[{fault}] {action}")),
                )?;
            }
            EventKind::Note { message } if message == ENCRYPTED_ON => {
                flow.encrypted = true;
                flow.ever_encrypted = true;
            }
            EventKind::Closed { reason } => flow.close(e.at, reason)?,
            _ => {}
        }
    }

    let mut capture = Capture::default();
    datagrams(packets, &mut capture)?;
    streams(events, packets, &byte_stream, &mut capture)?;
    for (_, mut flow) in flows {
        let whole = flow.goes_decrypted();
        for (i, (clear, packet)) in flow.packets.into_iter().enumerate() {
            if whole {
                let decrypted = flow.decrypted_instead.remove(&i);
                capture
                    .decrypted
                    .push(decrypted.unwrap_or_else(|| packet.clone()));
            }
            if clear {
                capture.clear.push(packet);
            }
        }
    }
    // Flows interleave in time; a stable sort keeps each flow's order.
    capture.clear.sort_by_key(|p| p.at);
    capture.decrypted.sort_by_key(|p| p.at);
    Ok(capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ms: u64, conn: u64, peer_port: u16, kind: EventKind) -> Event {
        Event {
            at: Duration::from_millis(ms),
            device: "tv".into(),
            connection: Some(conn),
            peer: Some(SocketAddr::from(([127, 0, 0, 1], peer_port))),
            kind,
        }
    }

    fn listening(service: &str, port: u16) -> Event {
        Event {
            at: Duration::ZERO,
            device: "tv".into(),
            connection: None,
            peer: None,
            kind: EventKind::Listening {
                service: service.into(),
                port,
            },
        }
    }

    fn request(method: &str, uri: &str, protocol: &str) -> EventKind {
        EventKind::Request {
            index: 0,
            method: method.into(),
            uri: uri.into(),
            protocol: protocol.into(),
            headers: vec![("Content-Length".into(), "0".into())],
            body: Vec::new(),
            content_type: None,
        }
    }

    fn response(body: &[u8]) -> EventKind {
        EventKind::Response {
            index: 0,
            status: 200,
            reason: "OK".into(),
            headers: vec![("Content-Length".into(), body.len().to_string())],
            body: body.to_vec(),
            content_type: None,
        }
    }

    /// (source port, destination port, sequence, TCP flags byte, payload) of a raw IPv4 packet.
    fn tcp(p: &Packet) -> (u16, u16, u32, u8, Vec<u8>) {
        let s = etherparse::SlicedPacket::from_ip(&p.data).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = s.transport else {
            panic!("not TCP")
        };
        let flags = t.slice()[13];
        (
            t.source_port(),
            t.destination_port(),
            t.sequence_number(),
            flags,
            t.payload().to_vec(),
        )
    }

    #[test]
    fn a_connection_becomes_handshake_messages_and_fin_with_the_real_ports() {
        let events = vec![
            listening("airplay", 7000),
            listening("dacp", 3689),
            ev(1, 0, 50_000, EventKind::Connected),
            ev(2, 0, 50_000, request("GET", "/info", "RTSP/1.0")),
            ev(
                3,
                0,
                50_000,
                EventKind::Fault {
                    request: Some(0),
                    fault: 2,
                    action: "busy".into(),
                },
            ),
            ev(3, 0, 50_000, response(b"hello")),
            ev(
                4,
                0,
                50_000,
                EventKind::Closed {
                    reason: "peer closed".into(),
                },
            ),
            // DACP's connection 0 of the same device, from another client port.
            ev(5, 0, 50_001, EventKind::Connected),
            ev(
                6,
                0,
                50_001,
                request("GET", "/login?pairing-guid=0x1", "HTTP/1.1"),
            ),
        ];
        let c = capture(&events, &[], &HashMap::new()).unwrap();
        assert!(c.decrypted.is_empty());
        let packets: Vec<_> = c.clear.iter().map(tcp).collect();
        // SYN, SYN-ACK, ACK, request, fault, response, FIN, FIN, ACK; then SYN, SYN-ACK, ACK,
        // request.
        assert_eq!(packets.len(), 13);
        assert_eq!(
            c.clear[4].comment.as_deref(),
            Some("airtwin faults[2] busy")
        );
        let packets: Vec<_> = packets
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            (packets[0].0, packets[0].1, packets[0].3),
            (50_000, 7000, 0x02)
        );
        assert_eq!(
            (packets[1].0, packets[1].1, packets[1].3),
            (7000, 50_000, 0x12)
        );
        assert_eq!(
            packets[3].4,
            b"GET /info RTSP/1.0\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(packets[3].2, 1_001, "the SYN took one sequence number");
        assert_eq!(
            packets[4].4,
            b"RTSP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert_eq!(packets[5].3 & 0x01, 0x01, "FIN from the device");
        assert_eq!(
            (packets[8].0, packets[8].1),
            (50_001, 3689),
            "DACP path, DACP port"
        );
    }

    #[test]
    fn an_encrypted_connection_goes_whole_to_the_second_file() {
        let events = vec![
            listening("airplay", 7000),
            ev(1, 0, 50_000, EventKind::Connected),
            ev(2, 0, 50_000, request("POST", "/pair-verify", "HTTP/1.1")),
            ev(3, 0, 50_000, response(b"")),
            ev(
                3,
                0,
                50_000,
                EventKind::Note {
                    message: ENCRYPTED_ON.into(),
                },
            ),
            ev(4, 0, 50_000, request("GET", "/info", "RTSP/1.0")),
            ev(5, 0, 50_000, response(b"secret")),
        ];
        let c = capture(&events, &[], &HashMap::new()).unwrap();
        let clear: Vec<_> = c.clear.iter().map(tcp).collect();
        let plain: Vec<_> = c.decrypted.iter().map(tcp).collect();
        assert_eq!(clear.len(), 5, "handshake, pair-verify and its answer");
        assert_eq!(plain.len(), 7);
        assert!(plain[5].4.starts_with(b"GET /info RTSP/1.0"));
        assert!(!clear.iter().any(|p| p.4.ends_with(b"secret")));
        // The decrypted file continues the sequence numbers of the clear part.
        assert_eq!(plain[5].2, 1_001 + clear[3].4.len() as u32);
    }

    #[test]
    fn interleaved_frames_join_their_connection_and_read_decrypted_in_the_second_file() {
        let frame = |ms: u64, wire: &[u8], plain: Option<&[u8]>| WirePacket {
            at: Duration::from_millis(ms),
            device: "tv".into(),
            transport: Transport::Tcp,
            from: SocketAddr::from(([127, 0, 0, 1], 50_000)),
            to: SocketAddr::from(([127, 0, 0, 1], 5000)),
            wire: Some(wire.to_vec()),
            plain: plain.map(<[u8]>::to_vec),
            note: None,
        };
        let events = vec![
            listening("raop", 5000),
            ev(1, 0, 50_000, EventKind::Connected),
            ev(2, 0, 50_000, request("RECORD", "rtsp://x/1", "RTSP/1.0")),
            ev(3, 0, 50_000, response(b"")),
            ev(
                6,
                0,
                50_000,
                EventKind::Closed {
                    reason: "peer closed".into(),
                },
            ),
        ];
        let packets = [
            frame(4, b"$\x00\x00\x04SEAL", Some(b"$\x00\x00\x04PCM!")),
            frame(5, b"$\x01\x00\x02ok", None),
        ];
        let c = capture(&events, &packets, &HashMap::new()).unwrap();
        let clear: Vec<_> = c.clear.iter().map(tcp).collect();
        let plain: Vec<_> = c.decrypted.iter().map(tcp).collect();
        // Handshake, RECORD, its answer, the two frames, FIN, FIN, ACK.
        assert_eq!(clear.len(), 10, "{clear:?}");
        assert_eq!(clear[5].4, b"$\x00\x00\x04SEAL");
        assert_eq!(clear[6].4, b"$\x01\x00\x02ok");
        // The frames follow RECORD in the client's sequence numbers.
        assert_eq!(clear[5].2, clear[3].2 + clear[3].4.len() as u32);
        assert_eq!(clear[6].2, clear[5].2 + 8);
        // The second file: the same connection, the encrypted frame decrypted, same numbers.
        assert_eq!(plain.len(), clear.len());
        assert_eq!(plain[5].4, b"$\x00\x00\x04PCM!");
        assert_eq!(plain[5].2, clear[5].2);
        assert_eq!(plain[6], clear[6]);
        // Frames in clear only: no second file.
        let c = capture(&events, &packets[1..], &HashMap::new()).unwrap();
        assert!(c.decrypted.is_empty());
    }

    #[test]
    fn large_bodies_are_split_into_segments() {
        let body = vec![b'x'; SEGMENT * 2 + 10];
        let events = vec![
            listening("raop", 5000),
            ev(1, 0, 50_000, EventKind::Connected),
            ev(2, 0, 50_000, response(&body)),
        ];
        let c = capture(&events, &[], &HashMap::new()).unwrap();
        let sizes: Vec<usize> = c.clear.iter().map(|p| tcp(p).4.len()).collect();
        let whole = rebuild(
            "HTTP/1.1 200 OK",
            &[("Content-Length".into(), body.len().to_string())],
            &body,
        )
        .len();
        assert_eq!(&sizes[3..], &[SEGMENT, SEGMENT, whole - 2 * SEGMENT]);
    }

    #[test]
    fn logged_datagrams_are_udp_packets_and_their_plaintext_goes_to_the_second_file() {
        let datagram = |ms: u64, to: u16, wire: &[u8], plain: Option<&[u8]>| WirePacket {
            at: Duration::from_millis(ms),
            device: "apx".into(),
            transport: Transport::Udp,
            from: SocketAddr::from(([127, 0, 0, 1], 40_000)),
            to: SocketAddr::from(([127, 0, 0, 1], to)),
            wire: Some(wire.to_vec()),
            plain: plain.map(<[u8]>::to_vec),
            note: None,
        };
        let packets = [
            datagram(1, 6001, b"sync", None),
            datagram(2, 6000, b"sealed-1", Some(b"audio-1")),
            datagram(3, 6000, b"sealed-2", Some(b"audio-2")),
        ];
        let udp = |p: &Packet| {
            let s = etherparse::SlicedPacket::from_ip(&p.data).unwrap();
            let Some(etherparse::TransportSlice::Udp(u)) = s.transport else {
                panic!("not UDP")
            };
            (u.source_port(), u.destination_port(), u.payload().to_vec())
        };
        let c = capture(&[], &packets, &HashMap::new()).unwrap();
        let clear: Vec<_> = c.clear.iter().map(udp).collect();
        let plain: Vec<_> = c.decrypted.iter().map(udp).collect();
        assert_eq!(
            clear,
            [
                (40_000, 6001, b"sync".to_vec()),
                (40_000, 6000, b"sealed-1".to_vec()),
                (40_000, 6000, b"sealed-2".to_vec())
            ]
        );
        assert_eq!(
            plain.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
            [b"sync".to_vec(), b"audio-1".to_vec(), b"audio-2".to_vec()]
        );
        let comments: Vec<_> = c.clear.iter().map(|p| p.comment.clone()).collect();
        assert_eq!(
            comments,
            [
                Some("airtwin: decode as RTP with -d udp.port==6001,rtp".into()),
                Some("airtwin: decode as RTP with -d udp.port==6000,rtp".into()),
                None
            ]
        );
        // Nothing encrypted: no second file.
        let c = capture(&[], &packets[..1], &HashMap::new()).unwrap();
        assert!(c.decrypted.is_empty());
    }

    #[test]
    fn a_logged_byte_stream_is_a_connection_on_the_wire_and_in_plaintext() {
        let (client, ap) = (
            SocketAddr::from(([127, 0, 0, 1], 50_000)),
            SocketAddr::from(([127, 0, 0, 1], 4070)),
        );
        let logged = |ms: u64, from_client: bool, wire: Option<&[u8]>, plain: Option<&[u8]>| {
            let (from, to) = if from_client {
                (client, ap)
            } else {
                (ap, client)
            };
            WirePacket {
                at: Duration::from_millis(ms),
                device: "tv".into(),
                transport: Transport::Tcp,
                from,
                to,
                wire: wire.map(<[u8]>::to_vec),
                plain: plain.map(<[u8]>::to_vec),
                note: None,
            }
        };
        let events = vec![
            listening("spotify-ap", 4070),
            ev(1, 0, 50_000, EventKind::Connected),
            ev(2, 0, 50_000, request("Login", "", "spotify-ap")),
            ev(
                9,
                0,
                50_000,
                EventKind::Closed {
                    reason: "peer closed".into(),
                },
            ),
        ];
        let packets = [
            logged(2, true, Some(b"\x00\x04hello"), None),
            logged(2, true, None, Some(b"\x00\x04hello")),
            logged(3, true, Some(b"sealed+mac"), None),
            logged(3, true, None, Some(b"\xab\x00\x01x")),
        ];
        let c = capture(&events, &packets, &HashMap::new()).unwrap();
        let data = |ps: &[Packet]| -> Vec<(u16, u16, Vec<u8>)> {
            ps.iter()
                .map(tcp)
                .filter(|p| !p.4.is_empty())
                .map(|p| (p.0, p.1, p.4))
                .collect()
        };
        assert_eq!(
            data(&c.clear),
            [
                (50_000, 4070, b"\x00\x04hello".to_vec()),
                (50_000, 4070, b"sealed+mac".to_vec())
            ]
        );
        assert_eq!(
            data(&c.decrypted),
            [
                (50_000, 4070, b"\x00\x04hello".to_vec()),
                (50_000, 4070, b"\xab\x00\x01x".to_vec())
            ]
        );
        // Handshake, two segments, FIN, FIN, ACK in each file.
        assert_eq!((c.clear.len(), c.decrypted.len()), (8, 8));
        assert_eq!(tcp(&c.clear[0]).3, 0x02, "SYN first");
        // Without logged bytes a byte stream is not in the capture.
        assert!(capture(&events, &[], &HashMap::new())
            .unwrap()
            .clear
            .is_empty());
    }
}
