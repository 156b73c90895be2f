//! DNS-SD records of the simulated devices, and the sans-IO answer to a DNS-SD query.
//!
//! A device is found by the services it publishes (RFC 6763): a PTR record from the service type
//! (`_raop._tcp.local`) to each instance, an SRV record from the instance to a host name and port,
//! a TXT record of `key=value` strings, and an A record from the host name to its address. What
//! each device kind publishes is a protocol fact kept beside its core (`raop::records`,
//! `airplay::records`, `dacp::records`); this module only turns [`HostRecords`] into DNS
//! answers. The multicast announcer (`shell::mdns`, over mdns-sd) and the unicast responder on
//! 127.0.0.1 (`shell::dns_sd`) both carry these records.

use std::net::Ipv4Addr;

use serde::Serialize;
use simple_dns::rdata::{RData, A, PTR, SRV, TXT};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, TYPE};

/// One published service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRecord {
    /// Service type without the domain, e.g. `_raop._tcp`.
    pub service: String,
    /// Instance name (one DNS label, may hold spaces and `@`), e.g. `001124004491@Kitchen`.
    pub instance: String,
    /// TCP port of the service.
    pub port: u16,
    /// TXT `key=value` entries in order (RFC 6763 §6).
    pub txt: Vec<(String, String)>,
}

impl ServiceRecord {
    pub fn new(service: &str, instance: impl Into<String>, port: u16) -> Self {
        ServiceRecord {
            service: service.to_string(),
            instance: instance.into(),
            port,
            txt: Vec::new(),
        }
    }

    /// Adds a TXT entry, replacing one with the same key (keys are case-insensitive, RFC 6763
    /// §6.4).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .txt
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some(entry) => entry.1 = value,
            None => self.txt.push((key.to_string(), value)),
        }
    }

    /// The value of a TXT key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.txt
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// `<instance>.<service>.local`.
    pub fn fullname(&self) -> String {
        format!("{}.{}.local", self.instance, self.service)
    }
}

/// The records of one device: its host name, address and services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRecords {
    /// Host name without `.local`, e.g. `kitchen` (see [`host_label`]).
    pub host: String,
    pub address: Ipv4Addr,
    pub services: Vec<ServiceRecord>,
}

/// The records every responder of a run answers from; the control API edits them live (a
/// renamed device is announced under its new name).
pub type SharedRecords = std::sync::Arc<std::sync::RwLock<Vec<HostRecords>>>;

/// A host-name label for a device name: letters, digits and `-` (RFC 952 / RFC 1123 host names),
/// never empty.
pub fn host_label(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_string();
    if out.is_empty() {
        out = "airtwin".into();
    }
    out.truncate(63);
    out
}

/// TTL of records tied to a host (SRV, A): 120 s; of the others (PTR, TXT): 4500 s (RFC 6762
/// §10).
const HOST_TTL: u32 = 120;
const OTHER_TTL: u32 = 4500;

/// `_services._dns-sd._udp.local`: enumerates the service types (RFC 6763 §9).
const SERVICES_META: &str = "_services._dns-sd._udp.local";

/// Why a query got no answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DnsError {
    #[error("not a DNS message: {0}")]
    Malformed(String),
    #[error("a response, not a query")]
    NotAQuery,
    #[error("cannot build the answer: {0}")]
    Build(String),
}

fn labels_of(name: &Name<'_>) -> Vec<Vec<u8>> {
    name.get_labels()
        .iter()
        .map(|l| l.as_ref().to_ascii_lowercase())
        .collect()
}

fn split_dotted(s: &str) -> Vec<Vec<u8>> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.as_bytes().to_ascii_lowercase())
        .collect()
}

/// A DNS name from an instance label (kept whole: it may hold dots or spaces) and a dotted rest.
fn name_with_instance<'a>(instance: &'a str, rest: &'a str) -> Result<Name<'a>, DnsError> {
    let mut labels = vec![simple_dns::Label::new(instance.as_bytes())
        .map_err(|e| DnsError::Build(format!("instance {instance:?}: {e}")))?];
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        labels.push(
            simple_dns::Label::new(part.as_bytes())
                .map_err(|e| DnsError::Build(format!("{part:?}: {e}")))?,
        );
    }
    Ok(Name::new_with_labels(&labels))
}

fn dotted(s: &str) -> Result<Name<'_>, DnsError> {
    Name::new(s).map_err(|e| DnsError::Build(format!("{s:?}: {e}")))
}

fn txt_rdata(entries: &[(String, String)]) -> Result<TXT<'_>, DnsError> {
    let mut txt = TXT::new();
    for (k, v) in entries {
        txt.add_attribute(k, Some(v.as_bytes()))
            .map_err(|e| DnsError::Build(format!("TXT {k}: {e}")))?;
    }
    Ok(txt)
}

/// Answers one DNS-SD query (the bytes of a UDP datagram) from `hosts`: PTR for service types
/// and for the `_services._dns-sd._udp` enumeration, SRV, TXT and A, with the records a client
/// needs next in the additional section (RFC 6763 §12). Every query gets a reply, empty when
/// nothing matches, with its id and questions echoed, as RFC 6762 §6.7 asks of answers to
/// "legacy" unicast queries (pyatv's unicast scan waits for one reply per query it sent).
pub fn answer(query: &[u8], hosts: &[HostRecords]) -> Result<Vec<u8>, DnsError> {
    let packet = Packet::parse(query).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if packet.has_flags(PacketFlag::RESPONSE) {
        return Err(DnsError::NotAQuery);
    }
    let mut reply = Packet::new_reply(packet.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    // Owned copies of every name the reply refers to live here, so the packet may borrow them.
    let host_names: Vec<String> = hosts.iter().map(|h| format!("{}.local", h.host)).collect();
    let types: Vec<String> = {
        let mut t: Vec<String> = hosts
            .iter()
            .flat_map(|h| h.services.iter().map(|s| format!("{}.local", s.service)))
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let mut answers: Vec<ResourceRecord<'static>> = Vec::new();
    let mut additional: Vec<ResourceRecord<'static>> = Vec::new();
    for q in &packet.questions {
        reply.questions.push(q.clone());
        let qname = labels_of(&q.qname);
        let any = matches!(q.qtype, QTYPE::ANY);
        let wants = |t: TYPE| any || q.qtype == QTYPE::TYPE(t);
        if qname == split_dotted(SERVICES_META) && wants(TYPE::PTR) {
            for t in &types {
                answers.push(record(
                    SERVICES_META,
                    OTHER_TTL,
                    RData::PTR(PTR(dotted(t)?)),
                )?);
            }
            continue;
        }
        for (h, host_name) in hosts.iter().zip(&host_names) {
            let a = || record(host_name, HOST_TTL, RData::A(A::from(h.address)));
            if qname == split_dotted(host_name) && wants(TYPE::A) {
                answers.push(a()?);
            }
            for s in &h.services {
                let type_name = format!("{}.local", s.service);
                let mut full = vec![s.instance.as_bytes().to_ascii_lowercase()];
                full.extend(split_dotted(&type_name));
                let srv = || -> Result<ResourceRecord<'static>, DnsError> {
                    let rdata = RData::SRV(SRV {
                        priority: 0,
                        weight: 0,
                        port: s.port,
                        target: dotted(host_name)?,
                    });
                    let name = full_name(&s.instance, &s.service)?;
                    Ok(ResourceRecord::new(name, CLASS::IN, HOST_TTL, rdata).into_owned())
                };
                let txt = || -> Result<ResourceRecord<'static>, DnsError> {
                    let name = full_name(&s.instance, &s.service)?;
                    let rdata = RData::TXT(txt_rdata(&s.txt)?);
                    Ok(ResourceRecord::new(name, CLASS::IN, OTHER_TTL, rdata).into_owned())
                };
                if qname == split_dotted(&type_name) && wants(TYPE::PTR) {
                    let target = full_name(&s.instance, &s.service)?;
                    answers.push(record(&type_name, OTHER_TTL, RData::PTR(PTR(target)))?);
                    additional.push(srv()?);
                    additional.push(txt()?);
                    additional.push(a()?);
                } else if qname == full {
                    if wants(TYPE::SRV) {
                        answers.push(srv()?);
                        additional.push(a()?);
                    }
                    if wants(TYPE::TXT) {
                        answers.push(txt()?);
                    }
                }
            }
        }
    }
    for r in answers {
        reply.answers.push(r);
    }
    for r in additional {
        if !reply.answers.contains(&r) && !reply.additional_records.contains(&r) {
            reply.additional_records.push(r);
        }
    }
    reply
        .build_bytes_vec_compressed()
        .map_err(|e| DnsError::Build(e.to_string()))
}

/// `<instance>.<service>.local` as an owned DNS name, the instance kept as one label.
fn full_name(instance: &str, service: &str) -> Result<Name<'static>, DnsError> {
    let rest = format!("{service}.local");
    Ok(name_with_instance(instance, &rest)?.into_owned())
}

/// An owned record named by a dotted name.
fn record(name: &str, ttl: u32, rdata: RData<'_>) -> Result<ResourceRecord<'static>, DnsError> {
    Ok(ResourceRecord::new(dotted(name)?, CLASS::IN, ttl, rdata).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<HostRecords> {
        let mut s = ServiceRecord::new("_raop._tcp", "001124004491@Kitchen Speaker", 5000);
        s.set("am", "AirPort10,115");
        s.set("et", "0,1");
        vec![HostRecords {
            host: host_label("Kitchen Speaker"),
            address: Ipv4Addr::new(127, 0, 0, 2),
            services: vec![s],
        }]
    }

    fn query(name: &str, qtype: TYPE) -> Vec<u8> {
        let mut p = Packet::new_query(0x35FF);
        p.questions.push(simple_dns::Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(qtype),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    #[test]
    fn ptr_query_for_a_service_type_gets_ptr_srv_txt_and_a() {
        let reply = answer(&query("_raop._tcp.local", TYPE::PTR), &hosts()).unwrap();
        let p = Packet::parse(&reply).unwrap();
        assert_eq!(p.id(), 0x35FF);
        assert!(p.has_flags(PacketFlag::RESPONSE));
        assert_eq!(p.questions.len(), 1, "questions echoed (RFC 6762 §6.7)");
        assert_eq!(p.answers.len(), 1);
        let RData::PTR(ptr) = &p.answers[0].rdata else {
            panic!("not a PTR: {:?}", p.answers[0].rdata)
        };
        assert_eq!(
            ptr.0.get_labels()[0].as_ref(),
            b"001124004491@Kitchen Speaker"
        );
        let kinds: Vec<TYPE> = p
            .additional_records
            .iter()
            .map(|r| r.rdata.type_code())
            .collect();
        assert!(kinds.contains(&TYPE::SRV) && kinds.contains(&TYPE::TXT));
        assert!(kinds.contains(&TYPE::A));
        for r in &p.additional_records {
            match &r.rdata {
                RData::SRV(srv) => {
                    assert_eq!(srv.port, 5000);
                    assert_eq!(srv.target.to_string(), "Kitchen-Speaker.local");
                }
                RData::A(a) => assert_eq!(Ipv4Addr::from(a.address), Ipv4Addr::new(127, 0, 0, 2)),
                RData::TXT(t) => {
                    let attrs = t.attributes();
                    assert_eq!(attrs["am"].as_deref(), Some("AirPort10,115"));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_names_get_an_empty_reply_and_garbage_an_error() {
        let reply = answer(&query("_nothing._tcp.local", TYPE::PTR), &hosts()).unwrap();
        let p = Packet::parse(&reply).unwrap();
        assert!(p.answers.is_empty());
        assert!(matches!(
            answer(b"\x01\x02", &hosts()),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn service_enumeration_lists_every_type() {
        let reply = answer(&query(SERVICES_META, TYPE::PTR), &hosts()).unwrap();
        let p = Packet::parse(&reply).unwrap();
        assert_eq!(p.answers.len(), 1);
    }

    #[test]
    fn host_labels_are_valid_host_names() {
        assert_eq!(host_label("Living Room"), "Living-Room");
        assert_eq!(host_label("@@"), "airtwin");
    }
}
