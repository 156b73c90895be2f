//! DNS-SD queries to the unicast responder: `wire::dns_sd::answer` from the records of one device of
//! each kind. Property: every answer is a DNS response with the query's id.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::SystemTime;

use airtwin_simulators::airplay::AirplayConfig;
use airtwin_simulators::dacp::DacpConfig;
use airtwin_simulators::raop::RaopConfig;
use airtwin_simulators::wire::dns_sd::{answer, host_label, HostRecords};
use libfuzzer_sys::fuzz_target;
use simple_dns::{Packet, PacketFlag};

fn hosts() -> &'static [HostRecords] {
    static HOSTS: OnceLock<Vec<HostRecords>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        vec![
            HostRecords {
                host: host_label("Kitchen"),
                address: Ipv4Addr::new(127, 0, 0, 1),
                services: RaopConfig::airport_express("Kitchen").services("Kitchen", 5000),
            },
            HostRecords {
                host: host_label("Living Room"),
                address: Ipv4Addr::new(127, 0, 0, 2),
                services: AirplayConfig::apple_tv("Living Room", 7).services("Living Room", 7000),
            },
            HostRecords {
                host: host_label("Library"),
                address: Ipv4Addr::new(127, 0, 0, 3),
                services: DacpConfig::itunes("Library", SystemTime::UNIX_EPOCH)
                    .services("Library", 3689, "iTunes", true),
            },
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = answer(data, hosts()) {
        let query = Packet::parse(data).expect("answered queries parse");
        let parsed = Packet::parse(&reply).expect("answers parse");
        assert!(parsed.has_flags(PacketFlag::RESPONSE));
        assert_eq!(parsed.id(), query.id());
    }
});
