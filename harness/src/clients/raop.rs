//! airtwin's own RAOP sender (`airtwin client raop`), a conformance client.
//!
//! It does what an AirTunes v2 sender does (docs/protocols/raop.md) and, unlike the
//! common open-source senders, VERIFIES `Apple-Response` against the device's public key, the
//! device's address and its hardware id (docs/protocols/raop.md), so a signature fault is caught:
//! OPTIONS with a random challenge → ANNOUNCE with `rsaaeskey`/`aesiv` and ALAC → SETUP → RECORD →
//! encrypted ALAC over RTP → TEARDOWN. Each step is reported on its own line; the first failure
//! names the step and the difference, and the client exits 1.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use airtwin_simulators::raop::audio::AesParams;
use airtwin_simulators::raop::challenge::{self, encode_b64};
use airtwin_simulators::raop::rtp;
use airtwin_simulators::raop::sender::{AlacPacketizer, RtpSender};
use airtwin_simulators::wire::transport::Transport;
use anyhow::{bail, Context as _, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rsa::RsaPublicKey;
use tokio::net::UdpSocket;

use super::rtsp::RtspClient;
use crate::devices::{parse_mac, Device};
use crate::expect::audio_match;
use crate::scenario::{ChallengeOn, Loaded, RaopClientSpec};

/// Everything one run of the sender needs.
#[derive(Clone)]
pub struct Options {
    pub addr: SocketAddr,
    pub wav: PathBuf,
    pub challenge: ChallengeOn,
    pub encrypt: bool,
    /// Public key `Apple-Response` must verify against.
    pub verify_key: Arc<RsaPublicKey>,
    /// Hardware id expected in `Apple-Response`.
    pub mac: [u8; 6],
    pub response_timeout: Duration,
    pub seed: u64,
}

impl Options {
    pub fn from_spec(
        spec: &RaopClientSpec,
        loaded: &Loaded,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let ready = device.ready();
        let key = match &spec.verify_key {
            Some(k) => load_public(&match k.as_str() {
                "builtin" | "other" | "airport-express" => k.clone(),
                path => loaded.resolve(path).to_string_lossy().into_owned(),
            })?,
            None => {
                let pem = ready
                    .identity
                    .get("public_key")
                    .context("device has no RSA key")?;
                use rsa::pkcs1::DecodeRsaPublicKey;
                Arc::new(RsaPublicKey::from_pkcs1_pem(pem).context("device public key")?)
            }
        };
        let mac_text = spec
            .mac
            .clone()
            .or_else(|| ready.identity.get("mac").cloned())
            .unwrap_or_default();
        Ok(Options {
            addr: SocketAddr::new(device.address, device.port()),
            wav: loaded.resolve(&spec.file),
            challenge: spec.challenge,
            encrypt: spec.encrypt,
            verify_key: key,
            mac: parse_mac(&mac_text).with_context(|| format!("bad MAC {mac_text:?}"))?,
            response_timeout: Duration::from_secs_f64(spec.response_timeout.unwrap_or(5.0)),
            seed,
        })
    }
}

/// Loads the public half of a private key source (`builtin`, `other`, or a PEM path holding a
/// private or public key).
pub fn load_public(source: &str) -> Result<Arc<RsaPublicKey>> {
    if let Ok(private) = crate::key_file::load_private(source) {
        return Ok(Arc::new(private.to_public_key()));
    }
    let text = std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?;
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    RsaPublicKey::from_pkcs1_pem(&text)
        .or_else(|_| RsaPublicKey::from_public_key_pem(&text))
        .map(Arc::new)
        .with_context(|| format!("{source}: not an RSA key in PEM"))
}

impl super::InProcess for Options {
    async fn run(&self, log: &mut String) -> Result<()> {
        run(self, log).await
    }
}

/// The sender's steps. Writes one line per step to `log`.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let client = RtspClient::connect(opts.addr, opts.response_timeout)
        .await
        .context("connect")?;
    run_on(client, opts, log).await
}

/// The sender's steps on a connection already open (an AirPlay sender streams on the connection
/// it used for `/info` and fp-setup).
pub async fn run_on(mut client: RtspClient, opts: &Options, log: &mut String) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x005E_ED0F_5E4D);
    let wav = audio_match::read_wav(&opts.wav)
        .map_err(anyhow::Error::msg)
        .context("reading the WAV")?;
    let local = client.local_addr()?;
    let server_ip = client.peer_addr()?.ip();
    let session_num: u32 = rng.gen();
    let dacp_id: u64 = rng.gen();
    client.common.set("User-Agent", "airtwin-raop/0.1");
    client
        .common
        .set("Client-Instance", format!("{dacp_id:016X}"));
    client.common.set("DACP-ID", format!("{dacp_id:016X}"));
    client
        .common
        .set("Active-Remote", rng.gen::<u32>().to_string());
    let url = format!("rtsp://{}/{session_num}", local.ip());

    let challenge: [u8; 16] = rng.gen();
    let challenge_b64 = encode_b64(&challenge);

    // OPTIONS, with the challenge unless it goes on ANNOUNCE.
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if opts.challenge == ChallengeOn::Options {
        headers.push(("Apple-Challenge", &challenge_b64));
    }
    let resp = client
        .request("OPTIONS", "*", &headers, None)
        .await
        .context("OPTIONS")?;
    expect_ok("OPTIONS", resp.status, &resp.body)?;
    if opts.challenge == ChallengeOn::Options {
        verify("OPTIONS", &resp, opts, &challenge, server_ip, log)?;
    } else {
        let _ = writeln!(
            log,
            "ok OPTIONS: {}",
            resp.headers.get("Public").unwrap_or("")
        );
    }

    // ANNOUNCE: ALAC, and the AES key wrapped with the device's public key.
    let mut packetizer =
        AlacPacketizer::new(wav.channels, wav.sample_rate, 352).context("ALAC encoder")?;
    let aes = opts.encrypt.then(|| AesParams {
        key: rng.gen(),
        iv: rng.gen(),
    });
    let mut sdp = format!(
        "v=0\r\no=airtwin {session_num} 0 IN IP4 {}\r\ns=airtwin\r\nc=IN IP4 {}\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 {}\r\na=fmtp:96 {}\r\n",
        local.ip(),
        server_ip,
        packetizer.rtpmap(),
        packetizer.fmtp()
    );
    if let Some(aes) = &aes {
        let wrapped = challenge::encrypt_aes_key(&opts.verify_key, &aes.key, &mut rng)?;
        let _ = write!(
            sdp,
            "a=rsaaeskey:{wrapped}\r\na=aesiv:{}\r\n",
            encode_b64(&aes.iv)
        );
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if opts.challenge == ChallengeOn::Announce {
        headers.push(("Apple-Challenge", &challenge_b64));
    }
    let resp = client
        .request(
            "ANNOUNCE",
            &url,
            &headers,
            Some(("application/sdp", sdp.into_bytes())),
        )
        .await
        .context("ANNOUNCE")?;
    expect_ok("ANNOUNCE", resp.status, &resp.body)?;
    if opts.challenge == ChallengeOn::Announce {
        verify("ANNOUNCE", &resp, opts, &challenge, server_ip, log)?;
    } else {
        let _ = writeln!(
            log,
            "ok ANNOUNCE: {} {}",
            packetizer.rtpmap(),
            if aes.is_some() { "RSA/AES" } else { "clear" }
        );
    }

    // SETUP: our control and timing ports, theirs back.
    let control = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let timing = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let transport = format!(
        "RTP/AVP/UDP;unicast;interleaved=0-1;mode=record;control_port={};timing_port={}",
        control.local_addr()?.port(),
        timing.local_addr()?.port()
    );
    let resp = client
        .request("SETUP", &url, &[("Transport", &transport)], None)
        .await
        .context("SETUP")?;
    expect_ok("SETUP", resp.status, &resp.body)?;
    let answer = resp
        .headers
        .get("Transport")
        .and_then(Transport::parse)
        .context("SETUP: response has no readable Transport header")?;
    let server_port = answer
        .port("server_port")
        .context("SETUP: Transport has no server_port")?;
    let control_port = answer
        .port("control_port")
        .context("SETUP: Transport has no control_port")?;
    let session = resp
        .headers
        .get("Session")
        .context("SETUP: response has no Session")?;
    client.session = Some(
        session
            .split(';')
            .next()
            .unwrap_or(session)
            .trim()
            .to_string(),
    );
    let _ = writeln!(
        log,
        "ok SETUP: server_port {server_port}, control_port {control_port}, session {}",
        client.session.as_deref().unwrap_or("")
    );

    let seq: u16 = rng.gen();
    let rtptime: u32 = rng.gen();
    let rtp_info = format!("seq={seq};rtptime={rtptime}");
    let resp = client
        .request(
            "RECORD",
            &url,
            &[("Range", "npt=0-"), ("RTP-Info", &rtp_info)],
            None,
        )
        .await
        .context("RECORD")?;
    expect_ok("RECORD", resp.status, &resp.body)?;
    let _ = writeln!(
        log,
        "ok RECORD: Audio-Latency {}",
        resp.headers.get("Audio-Latency").unwrap_or("absent")
    );

    // Audio: ALAC frames, AES-encrypted, in RTP, to server_port; a sync packet first.
    let audio = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let server = SocketAddr::new(server_ip, server_port);
    control
        .send_to(
            &rtp::sync_packet(true, rtptime, SystemTime::now(), rtptime),
            SocketAddr::new(server_ip, control_port),
        )
        .await?;
    let mut sender = RtpSender::new(seq, rtptime, rng.gen(), aes);
    let per_packet = 352 * wav.channels as usize;
    let mut sent = 0usize;
    // Paced at four times real time: fast enough for short tests, slow enough that a receiver on
    // a loaded machine drains its socket between packets (a real sender paces at 1x).
    let packet_time = Duration::from_secs_f64(352.0 / f64::from(wav.sample_rate.max(1)) / 4.0);
    let start = tokio::time::Instant::now();
    for (i, chunk) in wav.samples.chunks(per_packet).enumerate() {
        let frames = (chunk.len() / wav.channels as usize) as u32;
        let payload = if chunk.len() == per_packet {
            packetizer.push(chunk).into_iter().next()
        } else {
            packetizer.push(chunk);
            packetizer.finish()
        };
        let Some(payload) = payload else { continue };
        audio
            .send_to(&sender.next_packet(&payload, frames), server)
            .await?;
        sent += 1;
        tokio::time::sleep_until(start + packet_time * (i as u32 + 1)).await;
    }
    let _ = writeln!(
        log,
        "ok AUDIO: {sent} ALAC packets, {} frames",
        wav.samples.len() / wav.channels as usize
    );

    let resp = client
        .request("TEARDOWN", &url, &[], None)
        .await
        .context("TEARDOWN")?;
    expect_ok("TEARDOWN", resp.status, &resp.body)?;
    let _ = writeln!(log, "ok TEARDOWN");
    Ok(())
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn expect_ok(step: &str, status: u16, body: &[u8]) -> Result<()> {
    if status != 200 {
        let why = String::from_utf8_lossy(body);
        bail!("{step}: device answered {status} {}", why.trim());
    }
    Ok(())
}

/// Checks the `Apple-Response` of `resp` as a conforming sender must (docs/protocols/raop.md) and
/// logs the step.
fn verify(
    step: &str,
    resp: &airtwin_simulators::wire::Response,
    opts: &Options,
    challenge: &[u8],
    ip: IpAddr,
    log: &mut String,
) -> Result<()> {
    let Some(response) = resp.headers.get("Apple-Response") else {
        bail!("{step}: no Apple-Response header in answer to Apple-Challenge");
    };
    challenge::verify_apple_response(&opts.verify_key, response, challenge, ip, &opts.mac)
        .map_err(|e| {
            anyhow::anyhow!(
                "{step}: bad Apple-Response {:?}: {e} (address {ip}, hardware id {})",
                truncate(response),
                mac_text(&opts.mac)
            )
        })?;
    let _ = writeln!(
        log,
        "ok {step}: Apple-Response verified ({ip} {})",
        mac_text(&opts.mac)
    );
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() > 24 {
        format!("{}…", &s[..24])
    } else {
        s.to_string()
    }
}
