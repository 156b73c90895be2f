//! A fake remote control's side of DACP pairing: it serves `/pair` and answers the library with
//! DMAP `cmpa{cmpg, cmnm, cmty}` when the code matches its PIN, else 500 (docs/protocols/dacp.md,
//! "Pairing"; docs/peers.md for what pyatv answers).
//!
//! The remote has no faults of its own: a remote that answers 500, a malformed `cmpa`, one without
//! `cmpg`, or answers late, is the correct remote plus ordinary faults of the seam
//! ([`RemoteAnswer::faults`]), so a scenario's faults reach it the same way.

use std::time::Duration;

use crate::fault::{Action, Fault, Match};
use crate::protocol_core::{ConnInfo, Context, Outcome, ProtocolCore};
use crate::wire::dmap::{self, Item};
use crate::wire::{Request, Response};

use super::pairing::pairing_code;

/// How a fake remote answers a pairing request whose code matches: the correct answer, or one
/// of the remote-side faults a scenario sets on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoteAnswer {
    /// 200 `cmpa{cmpg, cmnm, cmty}`.
    #[default]
    Ok,
    /// 500 whatever the code.
    Error500,
    /// 200 with a body that is not valid DMAP (the `cmpa` container runs past the end).
    Malformed,
    /// 200 `cmpa{cmnm, cmty}` without `cmpg`.
    MissingGuid,
}

/// The bytes `Malformed` keeps of the answer: the `cmpa` header alone, whose length then runs
/// past the end of the body.
const MALFORMED_BODY: usize = 8;

impl RemoteAnswer {
    /// The answer and a delay before it as ordinary faults of the seam, in this order.
    pub fn faults(self, delay: Duration) -> Vec<Fault> {
        let mut actions = Vec::new();
        if !delay.is_zero() {
            actions.push(Action::Delay(delay.as_millis() as u64));
        }
        match self {
            RemoteAnswer::Ok => {}
            RemoteAnswer::Error500 => actions.push(Action::Respond {
                status: 500,
                headers: Default::default(),
                body: String::new(),
            }),
            RemoteAnswer::Malformed => actions.push(Action::Truncate(MALFORMED_BODY)),
            RemoteAnswer::MissingGuid => actions.push(Action::EditDmap {
                remove: vec!["cmpg".into()],
            }),
        }
        actions
            .into_iter()
            .map(|action| Fault {
                when: Match {
                    path: Some("/pair".into()),
                    ..Match::default()
                },
                action,
                times: None,
                after: 0,
                probability: 1.0,
            })
            .collect()
    }
}

/// A remote control as the pairing sees it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `Pair` TXT value and the GUID answered in `cmpg`.
    pub guid: u64,
    /// The PIN the remote shows; `None` accepts any code.
    pub pin: Option<String>,
    pub name: String,
    /// `cmty`; pyatv answers `iPhone`.
    pub device_type: String,
    /// `servicename` the remote expects; another one is refused with 500.
    pub expect_service_name: Option<String>,
}

impl RemoteConfig {
    /// The `Pair` TXT value: 16 upper-case hex digits.
    pub fn pair(&self) -> String {
        format!("{:016X}", self.guid)
    }
}

/// What a `/pair` request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairOutcome {
    pub service_name: String,
    pub accepted: bool,
}

/// The remote's `/pair` handler: checks the code for the PIN, answers `cmpa` or 500.
pub fn handle_pair(req: &Request, cfg: &RemoteConfig) -> (Response, Option<PairOutcome>) {
    if req.path() != "/pair" {
        return (
            Response::new(req.protocol, 404).with_reason_text("only /pair is served"),
            None,
        );
    }
    let (Some(code), Some(service_name)) = (
        req.query_param("pairingcode"),
        req.query_param("servicename"),
    ) else {
        return (
            Response::new(req.protocol, 400)
                .with_reason_text("/pair needs pairingcode and servicename"),
            None,
        );
    };
    let code_ok = match &cfg.pin {
        None => true,
        Some(pin) => code.eq_ignore_ascii_case(&pairing_code(&cfg.pair(), pin)),
    };
    let name_ok = cfg
        .expect_service_name
        .as_deref()
        .is_none_or(|n| n == service_name);
    let accepted = code_ok && name_ok;
    let outcome = Some(PairOutcome {
        service_name: service_name.to_string(),
        accepted,
    });
    if !accepted {
        // A wrong code is answered 500 with an empty body (docs/peers.md).
        return (Response::new(req.protocol, 500), outcome);
    }
    let body = dmap::encode(&[Item::container(
        b"cmpa",
        vec![
            Item::int(b"cmpg", cfg.guid),
            Item::str(b"cmnm", cfg.name.clone()),
            Item::str(b"cmty", cfg.device_type.clone()),
        ],
    )]);
    let resp = Response::new(req.protocol, 200).with_body("application/x-dmap-tagged", body);
    (resp, outcome)
}

/// The fake remote's `/pair` server, as a [`ProtocolCore`] the TCP shell carries.
pub struct RemoteCore {
    pub config: RemoteConfig,
}

impl RemoteCore {
    pub fn new(config: RemoteConfig) -> Self {
        RemoteCore { config }
    }
}

impl ProtocolCore for RemoteCore {
    type Conn = ();

    fn open(&self, _conn: &ConnInfo) {}

    fn handle(&self, _: &mut (), req: &Request, cx: &mut Context<'_>) -> Outcome {
        let (resp, outcome) = handle_pair(req, &self.config);
        if let Some(o) = outcome {
            cx.info(format!(
                "pairing request from {:?}: {}",
                o.service_name,
                if o.accepted { "accepted" } else { "refused" }
            ));
        }
        Outcome::Respond(resp)
    }

    fn complete(&self, _: &mut (), req: &Request, _: &[u16], _: &mut Context<'_>) -> Response {
        Response::new(req.protocol, 500)
    }

    fn decorate(&self, _: &(), _: Option<&Request>, _: &mut Response, _: &Context<'_>) {}

    fn close(&self, _: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dacp::pairing::{parse_answer, CodeFormat, PairCall, PairError};
    use crate::fault::{apply_edits, preempt_response, FaultPlan, Preempt, RequestFacts};

    fn remote(pin: &str) -> RemoteConfig {
        RemoteConfig {
            guid: 1,
            pin: Some(pin.into()),
            name: "pyatv remote".into(),
            device_type: "ipod".into(),
            expect_service_name: None,
        }
    }

    fn call(pin: &str, format: CodeFormat) -> PairCall {
        PairCall {
            pair: "0000000000000001".into(),
            pin: pin.into(),
            service_name: "AAAAAAAAAAAAAAAA".into(),
            format,
        }
    }

    /// What the caller gets from a remote with the faults of `answer` and `delay`, as the shell
    /// applies the plan's verdict.
    fn answered(answer: RemoteAnswer, delay: Duration) -> (Response, Duration) {
        let req = call("1234", CodeFormat::Upper).request("h");
        let plan = FaultPlan::new(1, answer.faults(delay));
        let verdict = plan.on_request(&RequestFacts {
            device: "remote",
            connection: 0,
            request: 0,
            method: &req.method,
            path: req.path(),
        });
        let mut resp = match verdict.preempt {
            Some(Preempt::Respond(r)) => preempt_response(r, &req),
            Some(other) => panic!("unexpected {other:?}"),
            None => handle_pair(&req, &remote("1234")).0,
        };
        apply_edits(&mut resp, &verdict.edits);
        (resp, verdict.delay)
    }

    #[test]
    fn right_pin_pairs_and_the_answer_parses() {
        let req = call("1234", CodeFormat::Upper).request("h");
        let (resp, outcome) = handle_pair(&req, &remote("1234"));
        assert!(outcome.unwrap().accepted);
        let answer = parse_answer(&resp).unwrap();
        assert_eq!(
            answer,
            crate::dacp::pairing::PairAnswer {
                guid: 1,
                name: "pyatv remote".into(),
                device_type: "ipod".into()
            }
        );
        // Lower case is the same code.
        let req = call("1234", CodeFormat::Lower).request("h");
        assert_eq!(handle_pair(&req, &remote("1234")).0.status, 200);
    }

    #[test]
    fn wrong_pin_or_malformed_code_gets_500() {
        for (pin, format) in [
            ("1111", CodeFormat::Upper),
            ("1234", CodeFormat::Short),
            ("1234", CodeFormat::Naive),
        ] {
            let req = call(pin, format).request("h");
            let (resp, outcome) = handle_pair(&req, &remote("1234"));
            assert_eq!(resp.status, 500, "{pin} {format:?}");
            assert!(resp.body.is_empty());
            assert!(!outcome.unwrap().accepted);
            assert_eq!(parse_answer(&resp), Err(PairError::Refused(500)));
        }
        let req = call("1234", CodeFormat::Upper).request("h");
        let mut cfg = remote("1234");
        cfg.expect_service_name = Some("BBBBBBBBBBBBBBBB".into());
        assert_eq!(handle_pair(&req, &cfg).0.status, 500);
    }

    #[test]
    fn remote_answers_are_ordinary_faults_that_fail_the_pairing() {
        let (resp, delay) = answered(RemoteAnswer::Ok, Duration::ZERO);
        assert_eq!(parse_answer(&resp).map(|a| a.guid), Ok(1));
        assert!(delay.is_zero());
        let (resp, _) = answered(RemoteAnswer::Error500, Duration::ZERO);
        assert_eq!(parse_answer(&resp), Err(PairError::Refused(500)));
        let (resp, _) = answered(RemoteAnswer::MissingGuid, Duration::ZERO);
        assert_eq!(parse_answer(&resp), Err(PairError::NoGuid));
        let (resp, _) = answered(RemoteAnswer::Malformed, Duration::ZERO);
        assert!(
            matches!(parse_answer(&resp), Err(PairError::Malformed(_))),
            "{resp:?}"
        );
        let (resp, delay) = answered(RemoteAnswer::Ok, Duration::from_millis(1500));
        assert_eq!(delay, Duration::from_millis(1500));
        assert_eq!(parse_answer(&resp).map(|a| a.guid), Ok(1));
    }
}
