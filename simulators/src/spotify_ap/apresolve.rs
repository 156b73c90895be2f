//! The apresolve answer: `GET /?type=accesspoint&type=dealer&type=spclient` returns a JSON object
//! with one list of `"host:port"` strings per requested type (`docs/protocols/spotify-ap.md`,
//! "apresolve"). librespot asks for all three in one request; librespot-python asks per type.

use serde::{Deserialize, Serialize};

use crate::protocol_core::{ConnInfo, Context, Outcome, ProtocolCore};
use crate::wire::{Request, Response};

/// The three lists, in the order clients should try them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lists {
    #[serde(default)]
    pub accesspoint: Vec<String>,
    #[serde(default)]
    pub dealer: Vec<String>,
    #[serde(default)]
    pub spclient: Vec<String>,
}

/// The JSON body answering `query` (the part after `?`): only the requested types, or all three
/// when none is named.
pub fn answer(query: &str, lists: &Lists) -> String {
    let wanted: Vec<&str> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("type="))
        .collect();
    let mut out = serde_json::Map::new();
    for (name, list) in [
        ("accesspoint", &lists.accesspoint),
        ("dealer", &lists.dealer),
        ("spclient", &lists.spclient),
    ] {
        if wanted.is_empty() || wanted.contains(&name) {
            out.insert(name.into(), serde_json::json!(list));
        }
    }
    serde_json::Value::Object(out).to_string()
}

/// Why an apresolve answer names no access point a client can use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("apresolve answer is not the JSON lists: {0}")]
    Json(String),
    #[error("apresolve lists no accesspoint")]
    Empty,
    #[error("accesspoint {0:?} is not host:port")]
    Address(String),
}

/// The client's side: the first `accesspoint` entry of an answer, split at its last `:` as
/// librespot does (`docs/protocols/spotify-ap.md`, "apresolve").
pub fn first_accesspoint(body: &[u8]) -> Result<(String, u16), ResolveError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        accesspoint: Vec<String>,
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| ResolveError::Json(e.to_string()))?;
    let first = answer.accesspoint.first().ok_or(ResolveError::Empty)?;
    first
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_string(), port.parse().ok()?)))
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| ResolveError::Address(first.clone()))
}

/// apresolve as a core of the request driver: `GET /` with the `type` query answers
/// [`answer`] as JSON; anything else is 404. Failures (503, a hang, a cut body) are faults of the
/// seam (`when: {method: GET}`).
pub struct ApresolveCore {
    pub lists: Lists,
}

impl ProtocolCore for ApresolveCore {
    type Conn = ();

    fn open(&self, _: &ConnInfo) {}

    fn handle(&self, _: &mut (), req: &Request, _: &mut Context<'_>) -> Outcome {
        if req.method != "GET" || req.path() != "/" {
            return Outcome::Respond(Response::new(req.protocol, 404));
        }
        let body = answer(req.query().unwrap_or(""), &self.lists);
        Outcome::Respond(
            Response::new(req.protocol, 200).with_body("application/json", body.into_bytes()),
        )
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
    use crate::fault::CoreParams;
    use crate::wire::{Limits, Protocol};

    #[test]
    fn the_core_answers_get_root_with_json_and_other_paths_404() {
        let core = ApresolveCore {
            lists: Lists {
                accesspoint: vec!["127.0.0.1:4070".into()],
                ..Lists::default()
            },
        };
        let conn = ConnInfo {
            device: "ap".into(),
            index: 0,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
        };
        let params = CoreParams::default();
        let mut cx = Context::new(&conn, std::time::SystemTime::UNIX_EPOCH, &params);
        let parse = |text: &str| {
            crate::wire::parse_request(text.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap()
                .0
        };
        let req = parse("GET /?type=accesspoint HTTP/1.1\r\nHost: x\r\n\r\n");
        let Outcome::Respond(resp) = core.handle(&mut (), &req, &mut cx) else {
            panic!("answers at once")
        };
        assert_eq!(resp.status, 200);
        assert_eq!(resp.protocol, Protocol::Http11);
        assert_eq!(resp.body, br#"{"accesspoint":["127.0.0.1:4070"]}"#);
        let req = parse("GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
        let Outcome::Respond(resp) = core.handle(&mut (), &req, &mut cx) else {
            panic!("answers at once")
        };
        assert_eq!(resp.status, 404);
    }

    #[test]
    fn a_client_takes_the_first_accesspoint_and_names_what_is_wrong() {
        let lists = Lists {
            accesspoint: vec!["127.0.0.1:4070".into(), "127.0.0.1:443".into()],
            ..Lists::default()
        };
        let body = answer("type=accesspoint", &lists);
        assert_eq!(
            first_accesspoint(body.as_bytes()),
            Ok(("127.0.0.1".into(), 4070))
        );
        assert_eq!(
            first_accesspoint(br#"{"accesspoint":[],"dealer":[]}"#),
            Err(ResolveError::Empty)
        );
        assert_eq!(first_accesspoint(b"{}"), Err(ResolveError::Empty));
        assert_eq!(
            first_accesspoint(br#"{"accesspoint":["ap.example"]}"#),
            Err(ResolveError::Address("ap.example".into()))
        );
        assert!(matches!(
            first_accesspoint(b"<html>"),
            Err(ResolveError::Json(_))
        ));
    }

    #[test]
    fn answers_the_requested_types_in_order() {
        let lists = Lists {
            accesspoint: vec!["127.0.0.1:4070".into(), "127.0.0.1:443".into()],
            dealer: vec!["d:443".into()],
            spclient: vec![],
        };
        let body = answer("type=accesspoint&type=dealer&type=spclient", &lists);
        assert_eq!(
            body,
            r#"{"accesspoint":["127.0.0.1:4070","127.0.0.1:443"],"dealer":["d:443"],"spclient":[]}"#
        );
        assert_eq!(answer("type=dealer", &lists), r#"{"dealer":["d:443"]}"#);
    }
}
