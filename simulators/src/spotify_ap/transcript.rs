//! How packets read in the transcript: protobuf payloads as their text format, other payloads
//! as what the command carries (`docs/protocols/spotify-ap.md`, "Commands").

use librespot_protocol::authentication::{APWelcome, ClientResponseEncrypted};
use librespot_protocol::keyexchange::APLoginFailed;
use protobuf::MessageFull;

use super::codec::Frame;
use super::{command, mercury};

/// A message's fields in protobuf text format; `auth_data` and key material are kept, since the
/// transcript is a test artefact and the credentials are the scenario's own.
pub fn fields(msg: &impl MessageFull) -> String {
    protobuf::text_format::print_to_string(msg)
}

fn parsed<M: MessageFull>(payload: &[u8]) -> String {
    let mut m = M::new();
    match m.merge_from_bytes(payload) {
        Ok(()) if m.is_initialized() => fields(&m),
        Ok(()) => format!("{} (required fields missing)", fields(&m)),
        Err(e) => format!("(does not parse as {}: {e})", M::descriptor().name()),
    }
}

/// A frame's payload, decoded as its command says.
pub fn frame_fields(frame: &Frame) -> String {
    let p = &frame.payload;
    match frame.cmd {
        command::LOGIN => parsed::<ClientResponseEncrypted>(p),
        command::AP_WELCOME => parsed::<APWelcome>(p),
        command::AUTH_FAILURE => parsed::<APLoginFailed>(p),
        command::PING | command::PONG if p.len() == 4 => {
            format!("time {}", u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        }
        command::COUNTRY_CODE | command::PRODUCT_INFO => String::from_utf8_lossy(p).into_owned(),
        command::MERCURY_REQ => match mercury::parse(p) {
            Ok(r) => format!(
                "{} {} ({} body parts)",
                r.header.method(),
                r.header.uri(),
                r.body.len()
            ),
            Err(e) => e.to_string(),
        },
        _ if p.is_empty() => String::new(),
        _ => format!("{} bytes", p.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_payload_reads_as_its_fields() {
        let mut m = ClientResponseEncrypted::new();
        m.login_credentials.mut_or_insert_default().username = Some("alice".into());
        let f = frame_fields(&Frame::new(
            command::LOGIN,
            super::super::handshake::encode_lenient(&m),
        ));
        assert!(f.contains("username: \"alice\""), "{f}");
        assert!(f.ends_with("(required fields missing)"), "{f}");
        let f = frame_fields(&Frame::new(command::LOGIN, vec![0xff]));
        assert!(
            f.starts_with("(does not parse as ClientResponseEncrypted"),
            "{f}"
        );
    }
}
