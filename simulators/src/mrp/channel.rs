//! The device's side of one MRP data stream connection (docs/protocols/mrp.md, "Data frames"):
//! the bytes are sealed like the AirPlay control channel, with the data stream's keys; inside,
//! [`Frame`]s. Every `sync` frame from the controller is answered with a `rply` frame carrying
//! its sequence number, and each message the device sends goes out in a `sync` frame of its own
//! (command `cmnd`), with a sequence number that counts up. Transmits are named by what they
//! carry (`DEVICE_INFO`, `SET_STATE`, `rply`), which is what a fault's `method` matches.
//!
//! Sans-IO: a [`StreamConn`] the shell drives on the port the stream's SETUP opened.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::frame::{self, Frame};
use super::message;
use super::session::{self, Report, Session};
use super::MrpCore;
use crate::hap::channel::Channel;
use crate::stream_core::{NamedTransmit, StreamConn, StreamEvent};

/// How often the connection looks at the now-playing model for changes made elsewhere (a
/// stream connection has no revision watch; the check costs one lock).
pub const REFRESH: Duration = Duration::from_millis(200);

/// The first sequence number of the device's `sync` frames, at the bottom of the range pyatv
/// picks its own from (docs/protocols/mrp.md, "Data frames").
const FIRST_SEQNO: u64 = 0x1_0000_0000;

/// One data stream connection.
pub struct DataChannel {
    channel: Channel,
    session: Session,
    core: Arc<MrpCore>,
    plain: Vec<u8>,
    transmits: VecDeque<NamedTransmit>,
    events: VecDeque<StreamEvent>,
    closed: bool,
    seqno: u64,
    now: Option<SystemTime>,
}

impl DataChannel {
    /// A connection keyed from the pairing secret `shared` and the stream's `seed`.
    pub fn new(shared: &[u8], seed: u64, core: Arc<MrpCore>, connection: u64) -> Self {
        core.record().connections += 1;
        DataChannel {
            channel: Channel::data_stream_accessory(shared, seed),
            session: Session::new(core.clone(), connection),
            core,
            plain: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            seqno: FIRST_SEQNO,
            now: None,
        }
    }

    fn close(&mut self, why: String) {
        self.core.record().broken += 1;
        self.events
            .push_back(StreamEvent::Warning(format!("MRP data stream: {why}")));
        self.events.push_back(StreamEvent::Close(why));
        self.closed = true;
    }

    fn send_frame(&mut self, name: String, f: &Frame, fields: String) {
        self.events.push_back(StreamEvent::Sent {
            name: name.clone(),
            len: f.payload.len(),
            fields,
        });
        self.transmits.push_back(NamedTransmit {
            name,
            bytes: self.channel.seal(&f.encode()),
        });
    }

    /// Moves what the session has to say into frames and events.
    fn flush(&mut self) {
        while let Some(r) = self.session.poll_report() {
            self.events.push_back(match r {
                Report::Warning(w) => StreamEvent::Warning(w),
                Report::Note(n) => StreamEvent::Note(n),
            });
        }
        while let Some(m) = self.session.poll_message() {
            let name = message::type_name(m.kind());
            let fields = session::describe(&m);
            let f = Frame::sync("cmnd", self.seqno, frame::payload(&[message::encode(&m)]));
            self.seqno += 1;
            self.send_frame(name, &f, fields);
        }
    }

    fn handle_frame(&mut self, f: Frame, now: SystemTime) {
        if !f.is_sync() {
            if f.message_type == "rply" {
                self.core.record().replies += 1;
            } else {
                self.events.push_back(StreamEvent::Warning(format!(
                    "frame of type {:?}, neither sync nor rply; ignored",
                    f.message_type
                )));
            }
            self.events.push_back(StreamEvent::Received {
                name: f.message_type.clone(),
                len: f.payload.len(),
                fields: format!("seqno={}", f.seqno),
            });
            return;
        }
        self.core.record().syncs += 1;
        // The reply first: the controller waits for it before it counts the frame as delivered.
        self.send_frame(
            "rply".into(),
            &Frame::reply(f.seqno),
            format!("seqno={}", f.seqno),
        );
        let messages = match frame::messages(&f.payload) {
            Ok(m) => m,
            Err(e) => {
                self.events
                    .push_back(StreamEvent::Warning(format!("sync frame {}: {e}", f.seqno)));
                return;
            }
        };
        for bytes in messages {
            match message::decode(&bytes) {
                Ok(m) => {
                    let name = message::type_name(m.kind());
                    let mut fields = session::describe(&m);
                    if name.starts_with("TYPE_") || fields.is_empty() {
                        let numbers = session::field_numbers(&bytes);
                        fields = format!("{fields} fields={numbers:?}").trim().to_string();
                    }
                    self.events.push_back(StreamEvent::Received {
                        name,
                        len: bytes.len(),
                        fields,
                    });
                    self.session.handle(m, now);
                }
                Err(e) => self.events.push_back(StreamEvent::Warning(format!(
                    "a message of {} bytes is no ProtocolMessage: {e}",
                    bytes.len()
                ))),
            }
        }
    }
}

impl StreamConn for DataChannel {
    fn handle_input(&mut self, bytes: &[u8], now: SystemTime) {
        self.now = Some(now);
        if self.closed {
            return;
        }
        match self.channel.open(bytes) {
            Ok(plain) => self.plain.extend(plain),
            Err(e) => {
                // An accessory closes a connection whose block does not open (HAP R2 §6.5.2).
                self.close(format!("bad encrypted block: {e}"));
                return;
            }
        }
        loop {
            match Frame::decode(&self.plain) {
                Ok(Some((f, used))) => {
                    self.plain.drain(..used);
                    self.handle_frame(f, now);
                    self.flush();
                }
                Ok(None) => break,
                Err(e) => {
                    self.close(format!("not a frame: {e}"));
                    return;
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: SystemTime) {
        self.now = Some(now);
        if self.closed {
            return;
        }
        self.session.refresh(now);
        self.flush();
    }

    fn poll_transmit(&mut self) -> Option<NamedTransmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        if self.closed || !self.session.subscribed() {
            return None;
        }
        self.now.map(|t| t + REFRESH)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    /// A controller keeps the data stream open and silent while nothing changes (pyatv's
    /// `push_updates` for hours; the tunnel has no heartbeat): no idle timeout.
    fn idles_out(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::mrp::message::{kind, ClientUpdatesConfig, ProtocolMessage};
    use crate::mrp::MrpConfig;
    use crate::now_playing::{Model, NowPlaying, Player, Track};
    use crate::protocol_core::ConnInfo;
    use crate::stream_connection::StreamConnection;
    use crate::stream_core::Accept;

    fn core() -> Arc<MrpCore> {
        let cfg = NowPlaying {
            tracks: vec![Track {
                title: "Song".into(),
                duration: 60.0,
                ..Track::default()
            }],
            ..NowPlaying::default()
        };
        let model = Arc::new(Model::new(Player::new(
            &cfg,
            vec![None],
            SystemTime::UNIX_EPOCH,
        )));
        Arc::new(MrpCore::new(
            MrpConfig::apple_tv_4k("Den", "UID", "AppleTV11,1"),
            model,
        ))
    }

    /// The controller's sealed `sync` frame carrying `m`, as pyatv sends it (command `comm`).
    fn sync(ctl: &mut Channel, seqno: u64, m: &ProtocolMessage) -> Vec<u8> {
        let f = Frame::sync("comm", seqno, frame::payload(&[message::encode(m)]));
        ctl.seal(&f.encode())
    }

    fn frames(ctl: &mut Channel, dev: &mut DataChannel) -> Vec<Frame> {
        let mut plain = Vec::new();
        while let Some(t) = dev.poll_transmit() {
            plain.extend(ctl.open(&t.bytes).unwrap());
        }
        let mut out = Vec::new();
        while let Some((f, used)) = Frame::decode(&plain).unwrap() {
            plain.drain(..used);
            out.push(f);
        }
        out
    }

    #[test]
    fn a_sync_is_replied_with_its_seqno_then_answered_in_a_sync_of_its_own() {
        let shared = [3u8; 32];
        let core = core();
        let mut dev = DataChannel::new(&shared, 42, core.clone(), 0);
        let mut ctl = Channel::data_stream_controller(&shared, 42);
        let m = ProtocolMessage::new(kind::DEVICE_INFO, Some("D1".into()), "U".into());
        let bytes = sync(&mut ctl, 0x1_2345_6789, &m);
        dev.handle_input(&bytes[..10], SystemTime::UNIX_EPOCH);
        dev.handle_input(&bytes[10..], SystemTime::UNIX_EPOCH);
        let out = frames(&mut ctl, &mut dev);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].message_type.as_str(), out[0].seqno),
            ("rply", 0x1_2345_6789)
        );
        assert_eq!(
            (out[1].message_type.as_str(), out[1].command.as_str()),
            ("sync", "cmnd")
        );
        let msgs = frame::messages(&out[1].payload).unwrap();
        let answer = message::decode(&msgs[0]).unwrap();
        assert_eq!(answer.kind(), kind::DEVICE_INFO);
        assert_eq!(answer.identifier.as_deref(), Some("D1"));
        assert_eq!(core.record().syncs, 1);
    }

    #[test]
    fn a_change_made_elsewhere_is_pushed_at_the_next_timeout() {
        let shared = [3u8; 32];
        let core = core();
        let mut dev = DataChannel::new(&shared, 7, core.clone(), 0);
        let mut ctl = Channel::data_stream_controller(&shared, 7);
        let mut m = ProtocolMessage::new(kind::CLIENT_UPDATES_CONFIG, Some("C".into()), "U".into());
        m.client_updates_config = Some(ClientUpdatesConfig {
            now_playing_updates: Some(false),
            ..Default::default()
        });
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        dev.handle_input(&sync(&mut ctl, 1, &m), t0);
        assert_eq!(
            frames(&mut ctl, &mut dev).len(),
            4,
            "rply, SET_STATE, client, reply"
        );
        core.now_playing
            .with(t0, |p| p.command("pause", t0))
            .unwrap();
        let due = dev.poll_timeout().unwrap();
        dev.handle_timeout(due);
        let out = frames(&mut ctl, &mut dev);
        assert_eq!(out.len(), 1);
        let pushed = message::decode(&frame::messages(&out[0].payload).unwrap()[0]).unwrap();
        assert_eq!(pushed.kind(), kind::SET_STATE);
    }

    #[test]
    fn the_wrong_keys_close_the_stream() {
        let shared = [3u8; 32];
        let core = core();
        let mut dev = DataChannel::new(&shared, 7, core.clone(), 0);
        // Sealed under another seed's keys.
        let mut wrong = Channel::data_stream_controller(&shared, 8);
        let m = ProtocolMessage::new(kind::GENERIC, Some("G".into()), "U".into());
        dev.handle_input(&sync(&mut wrong, 1, &m), SystemTime::UNIX_EPOCH);
        assert!(dev.is_closed());
        assert_eq!(core.record().broken, 1);
    }

    fn driven(action: crate::fault::Action, method: &str) -> (StreamConnection<Accept>, Channel) {
        let shared = [6u8; 32];
        let core = core();
        let accept = Accept(Arc::new(move |info: &ConnInfo| {
            Box::new(DataChannel::new(&shared, 5, core.clone(), info.index)) as Box<dyn StreamConn>
        }));
        let fault = crate::fault::Fault {
            when: crate::fault::Match {
                method: Some(method.into()),
                ..Default::default()
            },
            action,
            times: None,
            after: 0,
            probability: 1.0,
        };
        let info = ConnInfo {
            device: "tv".into(),
            index: 3,
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:7000".parse().unwrap(),
        };
        let conn = StreamConnection::new(
            &accept,
            info,
            Arc::new(crate::fault::FaultPlan::new(1, vec![fault])),
            "mrp",
            Duration::from_secs(30),
            SystemTime::UNIX_EPOCH,
        );
        (conn, Channel::data_stream_controller(&[6u8; 32], 5))
    }

    #[test]
    fn corrupt_encrypted_block_through_the_seam_fails_the_controllers_tag_check() {
        let (mut conn, mut ctl) =
            driven(crate::fault::Action::CorruptEncryptedBlock, "DEVICE_INFO");
        let m = ProtocolMessage::new(kind::DEVICE_INFO, Some("D".into()), "U".into());
        conn.receive(&sync(&mut ctl, 9, &m), SystemTime::UNIX_EPOCH);
        let out = conn.poll_transmit().expect("rply and DEVICE_INFO");
        // The rply opens; the DEVICE_INFO block after it does not.
        let rply_len = 2 + Frame::reply(9).encode().len() + 16;
        assert!(ctl.open(&out[..rply_len]).is_ok());
        assert!(ctl.open(&out[rply_len..]).is_err());
        let events: Vec<EventKind> = std::iter::from_fn(|| conn.poll_event()).collect();
        assert!(events.iter().any(|e| matches!(e, EventKind::Note { message } if message.starts_with("corrupt_encrypted_block"))));
    }

    #[test]
    fn a_silent_data_stream_outlives_the_idle_timeout() {
        let (mut conn, _) = driven(crate::fault::Action::Drop, "NEVER");
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(3600);
        conn.handle_timeout(later);
        assert!(conn.end_reason().is_none());
        assert!(
            conn.poll_timeout().is_none_or(|t| t > later),
            "no idle deadline"
        );
    }

    #[test]
    fn drop_at_the_client_updates_config_answer_closes_the_data_stream() {
        let (mut conn, mut ctl) = driven(crate::fault::Action::Drop, "CLIENT_UPDATES_CONFIG");
        let m = ProtocolMessage::new(kind::CLIENT_UPDATES_CONFIG, Some("C".into()), "U".into());
        conn.receive(&sync(&mut ctl, 9, &m), SystemTime::UNIX_EPOCH);
        let mut plain = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            plain.extend(ctl.open(&b).unwrap());
        }
        let mut names = Vec::new();
        while let Some((f, used)) = Frame::decode(&plain).unwrap() {
            plain.drain(..used);
            names.push(match frame::messages(&f.payload) {
                Ok(m) if f.is_sync() => message::type_name(message::decode(&m[0]).unwrap().kind()),
                _ => f.message_type.clone(),
            });
        }
        assert_eq!(names, ["rply", "SET_STATE", "SET_NOW_PLAYING_CLIENT"]);
        assert_eq!(
            conn.end_reason(),
            Some(&crate::connection::End::Closed("dropped by fault".into()))
        );
    }
}
