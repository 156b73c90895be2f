//! Packets as they crossed the wire, for captures (`airtwin run --pcap`): what the events do not
//! hold as bytes. The events describe exchanges; UDP datagrams (RTP audio, sync, retransmits,
//! timing) and byte-stream connections (the Spotify access point's hello packets and Shannon
//! frames) are only counted or summarised there. A log is off unless a run asks for one
//! ([`crate::shell::Recorder::log_packets`]), and it keeps at most a byte budget: the oldest
//! packets go first, and the log counts what it dropped.
//!
//! Each packet may carry two views: `wire`, the bytes as they were on the wire, and `plain`, what
//! they carry decrypted (an RTP packet whose AES-CBC payload was decrypted, docs/protocols/raop.md
//! "Audio encryption"; a Shannon frame as command, length and payload, docs/protocols/spotify-ap.md
//! "Shannon frames").
//! A byte-stream core reports its plaintext apart from the bytes the shell moved, so a stream
//! packet holds one of the two.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Which transport a logged packet used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePacket {
    /// Time since the recorder started (the events' clock).
    pub at: Duration,
    /// The device's name, shared by every packet of the device.
    pub device: Arc<str>,
    pub transport: Transport,
    pub from: SocketAddr,
    pub to: SocketAddr,
    /// The bytes on the wire (a datagram; a read or write of a stream). `None`: plaintext only.
    pub wire: Option<Vec<u8>>,
    /// The same content decrypted, where the wire was encrypted.
    pub plain: Option<Vec<u8>>,
    /// What happened to it, for the capture's packet comment (a fault lost it).
    pub note: Option<String>,
}

impl WirePacket {
    /// The memory the packet holds: the record itself and its buffers (the device name is
    /// shared), so that a log of small datagrams stays within its budget too.
    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.wire.as_ref().map_or(0, Vec::capacity)
            + self.plain.as_ref().map_or(0, Vec::capacity)
            + self.note.as_ref().map_or(0, String::capacity)
    }
}

/// What a log kept, as a run's result holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logged {
    /// The packets kept, oldest first.
    pub packets: Vec<WirePacket>,
    /// Packets dropped to stay within the budget.
    pub dropped: u64,
}

/// A bounded log of [`WirePacket`]s.
#[derive(Debug)]
pub struct PacketLog {
    packets: VecDeque<WirePacket>,
    bytes: usize,
    budget: usize,
    dropped: u64,
}

impl PacketLog {
    /// 64 MiB: the same bound as a device's connection buffers
    /// ([`crate::buffer_budget::BufferBudget::DEFAULT_LIMIT`]); about four minutes of RAOP audio
    /// (352-frame ALAC packets at 44.1 kHz, each logged encrypted and decrypted).
    pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

    pub fn new(budget: usize) -> Self {
        PacketLog {
            packets: VecDeque::new(),
            bytes: 0,
            budget,
            dropped: 0,
        }
    }

    /// Adds `packet`, dropping the oldest packets while the log is over its budget.
    pub fn push(&mut self, packet: WirePacket) {
        self.bytes += packet.size();
        self.packets.push_back(packet);
        while self.bytes > self.budget {
            let Some(old) = self.packets.pop_front() else {
                break;
            };
            self.bytes -= old.size();
            self.dropped += 1;
        }
    }

    /// The packets kept, oldest first.
    pub fn packets(&self) -> impl Iterator<Item = &WirePacket> {
        self.packets.iter()
    }

    /// Packets dropped to stay within the budget.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// What the log holds, leaving it empty (a run's result takes it once, without a copy).
    pub fn take(&mut self) -> Logged {
        self.bytes = 0;
        Logged {
            packets: std::mem::take(&mut self.packets).into(),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(i: u8, len: usize) -> WirePacket {
        WirePacket {
            at: Duration::from_millis(u64::from(i)),
            device: "d".into(),
            transport: Transport::Udp,
            from: SocketAddr::from(([127, 0, 0, 1], 1)),
            to: SocketAddr::from(([127, 0, 0, 1], 2)),
            wire: Some(vec![i; len]),
            plain: None,
            note: None,
        }
    }

    #[test]
    fn a_log_over_its_budget_drops_the_oldest_packets_and_counts_them() {
        let each = std::mem::size_of::<WirePacket>() + 100;
        let mut log = PacketLog::new(3 * each);
        for i in 0..5 {
            log.push(packet(i, 100));
        }
        let kept: Vec<u8> = log.packets().map(|p| p.wire.as_ref().unwrap()[0]).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(log.dropped(), 2);
        // One packet larger than the whole budget is not kept either.
        log.push(packet(9, 10_000));
        assert_eq!((log.packets().count(), log.dropped()), (0, 6));
    }

    #[test]
    fn small_datagrams_count_their_record_not_only_their_bytes() {
        // 1,000 bytes of 20-byte timing packets: the records themselves outweigh the bytes.
        let mut log = PacketLog::new(1_000);
        for i in 0..50 {
            log.push(packet(i, 20));
        }
        let each = std::mem::size_of::<WirePacket>() + 20;
        assert_eq!(log.packets().count(), 1_000 / each);
        let taken = log.take();
        assert_eq!(taken.packets.len(), 1_000 / each);
        assert_eq!(taken.dropped, 50 - (1_000 / each) as u64);
        assert_eq!((log.packets().count(), log.dropped()), (0, 0));
    }
}
