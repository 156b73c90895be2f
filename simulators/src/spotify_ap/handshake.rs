//! The plaintext handshake: ClientHello, APResponseMessage, ClientResponsePlaintext, and the keys
//! both sides derive from it (librespot `core/src/connection/handshake.rs`;
//! `docs/protocols/spotify-ap.md`, "Handshake").
//!
//! Framing: the client's first packet is `[0, 4]`, a u32 BE length counting the whole packet
//! (2 + 4 + payload), and a protobuf; every later plaintext packet is a u32 BE length counting
//! itself (4 + payload) and a protobuf.

use hmac::{Hmac, Mac};
use librespot_protocol::keyexchange::{
    APChallenge, APLoginFailed, APResponseMessage, ClientHello, ClientResponsePlaintext,
    CryptoChallengeUnion, ErrorCode, FingerprintChallengeUnion, LoginCryptoChallengeUnion,
    LoginCryptoDiffieHellmanChallenge, PoWChallengeUnion,
};
use protobuf::{CodedOutputStream, Message};
use sha1::Sha1;
use thiserror::Error;

/// The two bytes in front of a ClientHello.
pub const HELLO_PREFIX: [u8; 2] = [0, 4];
/// The largest plaintext handshake packet accepted: a real ClientHello is about 150 bytes.
pub const MAX_PLAINTEXT_PACKET: usize = 16 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("hello does not start with [0, 4] (got {0:02x?})")]
    BadPrefix([u8; 2]),
    #[error("plaintext packet length {0} out of range (6..={MAX_PLAINTEXT_PACKET})")]
    BadLength(usize),
    #[error("{what} does not parse: {detail}")]
    Protobuf { what: &'static str, detail: String },
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("client offers no Shannon cryptosuite (offers {0:?})")]
    NoShannon(Vec<i32>),
}

/// A whole plaintext packet: its full bytes (for the key derivation) and its protobuf payload.
pub type Packet = (Vec<u8>, Vec<u8>);

/// One whole plaintext packet split off the front of `buf`; `None` until the packet is complete.
pub fn split_packet(buf: &[u8], hello: bool) -> Result<Option<Packet>, HandshakeError> {
    let head = if hello { 6 } else { 4 };
    if buf.len() < head {
        if hello && buf.len() >= 2 && buf[..2] != HELLO_PREFIX {
            return Err(HandshakeError::BadPrefix([buf[0], buf[1]]));
        }
        return Ok(None);
    }
    let (len_at, prefix) = if hello {
        (2, [buf[0], buf[1]])
    } else {
        (0, HELLO_PREFIX)
    };
    if prefix != HELLO_PREFIX {
        return Err(HandshakeError::BadPrefix(prefix));
    }
    let len = u32::from_be_bytes([
        buf[len_at],
        buf[len_at + 1],
        buf[len_at + 2],
        buf[len_at + 3],
    ]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len < head || len > MAX_PLAINTEXT_PACKET {
        return Err(HandshakeError::BadLength(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some((buf[..len].to_vec(), buf[head..len].to_vec())))
}

/// A plaintext packet after the hello: u32 BE length (4 + payload), payload.
pub fn frame_plaintext(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(4 + payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The hello packet: `[0, 4]`, u32 BE length (6 + payload), payload.
pub fn frame_hello(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + payload.len());
    out.extend_from_slice(&HELLO_PREFIX);
    out.extend_from_slice(&(6 + payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Serialises a message even when proto2-required fields are unset (for negative tests:
/// `write_to_bytes` refuses those).
pub fn encode_lenient(msg: &impl Message) -> Vec<u8> {
    let size = msg.compute_size();
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut os = CodedOutputStream::vec(&mut out);
    // Writing to a Vec cannot fail.
    let _ = msg.write_to_with_cached_sizes(&mut os);
    let _ = os.flush();
    drop(os);
    out
}

/// Parses a protobuf strictly (every proto2-required field set), as librespot does.
pub fn parse_strict<M: Message>(what: &'static str, bytes: &[u8]) -> Result<M, HandshakeError> {
    M::parse_from_bytes(bytes).map_err(|e| HandshakeError::Protobuf {
        what,
        detail: e.to_string(),
    })
}

/// What the AP takes from a ClientHello.
#[derive(Debug, Clone)]
pub struct HelloFacts {
    pub gc: Vec<u8>,
    pub client_nonce: Vec<u8>,
}

/// Checks a ClientHello offers Shannon and carries a DH public value.
pub fn check_hello(hello: &ClientHello) -> Result<HelloFacts, HandshakeError> {
    let suites: Vec<i32> = hello
        .cryptosuites_supported
        .iter()
        .map(|s| s.value())
        .collect();
    if !suites.contains(&0) {
        return Err(HandshakeError::NoShannon(suites));
    }
    let gc = hello
        .login_crypto_hello
        .diffie_hellman
        .as_ref()
        .and_then(|d| d.gc.clone())
        .filter(|gc| !gc.is_empty())
        .ok_or(HandshakeError::Missing(
            "login_crypto_hello.diffie_hellman.gc",
        ))?;
    Ok(HelloFacts {
        gc,
        client_nonce: hello.client_nonce.clone().unwrap_or_default(),
    })
}

/// The AP's challenge with every proto2-required field set: librespot parses it strictly.
pub fn ap_response(gs: &[u8], gs_signature: &[u8], server_nonce: &[u8]) -> APResponseMessage {
    let mut dh = LoginCryptoDiffieHellmanChallenge::new();
    dh.gs = Some(gs.to_vec());
    dh.server_signature_key = Some(1);
    dh.gs_signature = Some(gs_signature.to_vec());
    let mut login = LoginCryptoChallengeUnion::new();
    login.diffie_hellman = Some(dh).into();
    let mut challenge = APChallenge::new();
    challenge.login_crypto_challenge = Some(login).into();
    challenge.fingerprint_challenge = Some(FingerprintChallengeUnion::new()).into();
    challenge.pow_challenge = Some(PoWChallengeUnion::new()).into();
    challenge.crypto_challenge = Some(CryptoChallengeUnion::new()).into();
    challenge.server_nonce = Some(server_nonce.to_vec());
    let mut msg = APResponseMessage::new();
    msg.challenge = Some(challenge).into();
    msg
}

/// The plaintext refusal a real AP sends when the client's challenge HMAC is wrong: a framed
/// `APResponseMessage { login_failed { error_code } }`.
pub fn login_failed_packet(code: ErrorCode) -> Vec<u8> {
    let mut failed = APLoginFailed::new();
    failed.error_code = Some(code.into());
    let mut msg = APResponseMessage::new();
    msg.login_failed = Some(failed).into();
    frame_plaintext(&encode_lenient(&msg))
}

/// The challenge HMAC the client put in its ClientResponsePlaintext.
pub fn response_hmac(resp: &ClientResponsePlaintext) -> Option<&[u8]> {
    resp.login_crypto_response
        .diffie_hellman
        .as_ref()
        .and_then(|d| d.hmac.as_deref())
}

/// What both sides derive from the shared secret and the exact bytes of both hello packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The HMAC the client proves itself with.
    pub challenge: [u8; 20],
    /// Client → AP Shannon key.
    pub send: [u8; 32],
    /// AP → client Shannon key.
    pub recv: [u8; 32],
}

type HmacSha1 = Hmac<Sha1>;

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha1::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// librespot `compute_keys`: data = HMAC(secret, acc | i) for i in 1..=5 (100 bytes), where acc is
/// every byte of the ClientHello packet then every byte of the APResponseMessage packet;
/// challenge = HMAC(data[0..20], acc), send = data[20..52], recv = data[52..84].
pub fn derive_keys(shared_secret: &[u8], hello_packet: &[u8], response_packet: &[u8]) -> Keys {
    let mut data = Vec::with_capacity(100);
    for i in 1u8..=5 {
        data.extend_from_slice(&hmac_sha1(
            shared_secret,
            &[hello_packet, response_packet, &[i]],
        ));
    }
    let mut keys = Keys {
        challenge: hmac_sha1(&data[..20], &[hello_packet, response_packet]),
        send: [0; 32],
        recv: [0; 32],
    };
    keys.send.copy_from_slice(&data[20..52]);
    keys.recv.copy_from_slice(&data[52..84]);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Vectors made on the development machine with Python 3's standard library, independently
    // of this code:
    //   acc = bytes([0,4,0,0,0,10]) + b"helo" + bytes([0,0,0,8]) + b"resp"
    //   data = b"".join(hmac.new(secret, acc + bytes([i]), hashlib.sha1).digest() for i in range(1, 6))
    //   challenge = hmac.new(data[:20], acc, hashlib.sha1).digest()
    const HELLO: &[u8] = &[0, 4, 0, 0, 0, 10, b'h', b'e', b'l', b'o'];
    const RESP: &[u8] = &[0, 0, 0, 8, b'r', b'e', b's', b'p'];

    #[test]
    fn key_derivation_matches_python_hmac() {
        // secret = bytes([1]): (p - 1)^even mod p, the shortest secret there is.
        let keys = derive_keys(&[1], HELLO, RESP);
        assert_eq!(
            keys.challenge.to_vec(),
            hex("0755256c228613b52dee71930edd94b15d37c84f")
        );
        assert_eq!(
            keys.send.to_vec(),
            hex("a6c1a8a57271e65c4538275d789a8ace8aa602529297b584d24dea4ff66ac616")
        );
        assert_eq!(
            keys.recv.to_vec(),
            hex("58748b4e2d47b0cfd75fbdd69e04c103821cf32bf147e978fa91ad8897e0b705")
        );
    }

    #[test]
    fn a_95_byte_secret_is_not_padded() {
        // secret = bytes(range(1, 96)); padded = b"\0" + secret gives 8a58ec47… instead.
        let secret: Vec<u8> = (1..96).collect();
        let keys = derive_keys(&secret, HELLO, RESP);
        assert_eq!(
            keys.challenge.to_vec(),
            hex("19c4df3f896c71f5f3f9c0a54ad6a8751c3293e6")
        );
        let mut padded = vec![0];
        padded.extend_from_slice(&secret);
        assert_eq!(
            derive_keys(&padded, HELLO, RESP).challenge.to_vec(),
            hex("8a58ec47bee9afb1dc9d60419fb3ca5da3dc952e")
        );
    }

    #[test]
    fn hello_framing() {
        let packet = frame_hello(b"helo");
        assert_eq!(packet, HELLO);
        assert_eq!(
            split_packet(&packet, true).unwrap(),
            Some((HELLO.to_vec(), b"helo".to_vec()))
        );
        assert_eq!(split_packet(&packet[..5], true).unwrap(), None);
        assert_eq!(
            split_packet(b"GE", true),
            Err(HandshakeError::BadPrefix(*b"GE"))
        );
        assert_eq!(
            split_packet(&[0, 4, 0x7f, 0, 0, 0], true),
            Err(HandshakeError::BadLength(0x7f00_0000))
        );
        assert_eq!(
            split_packet(&[0, 4, 0, 0, 0, 3], true),
            Err(HandshakeError::BadLength(3))
        );
        assert_eq!(
            split_packet(RESP, false).unwrap(),
            Some((RESP.to_vec(), b"resp".to_vec()))
        );
    }

    #[test]
    fn ap_response_sets_every_required_field() {
        let msg = ap_response(&[2], &[3; 256], &[4; 16]);
        let bytes = msg.write_to_bytes().expect("initialised");
        let back: APResponseMessage = parse_strict("APResponseMessage", &bytes).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn login_failed_packet_names_the_code() {
        let packet = login_failed_packet(ErrorCode::ProtocolError);
        let (_, payload) = split_packet(&packet, false).unwrap().unwrap();
        let msg = APResponseMessage::parse_from_bytes(&payload).unwrap();
        assert_eq!(msg.login_failed.error_code(), ErrorCode::ProtocolError);
    }

    #[test]
    fn hello_without_shannon_is_refused() {
        let mut hello = ClientHello::new();
        hello.cryptosuites_supported = vec![protobuf::EnumOrUnknown::from_i32(1)];
        assert_eq!(
            check_hello(&hello).unwrap_err(),
            HandshakeError::NoShannon(vec![1])
        );
    }
}
