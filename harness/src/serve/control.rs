//! The control API of `airtwin serve`: HTTP/1.1 with JSON in and out, on 127.0.0.1 by default.
//!
//! | request | does |
//! |---|---|
//! | `GET /devices` | every device: name, kind, address, ports, identity, mDNS records, state |
//! | `GET /devices/NAME` | one device |
//! | `POST /devices/NAME/state` | changes state live: `{"volume": -12.5, "name": "Den"}`; DACP devices also `now_playing` (a track: title, artist, album, genre, duration), `play_state` (playing, paused, stopped), `position` (s), `next` (true) |
//! | `GET /devices/NAME/audio` | the audio it still holds in memory, as a WAV file; headers `Airtwin-Capture-Window` (packets kept per session, `--capture-window`), `Airtwin-Capture-Handed-On` (packets that left memory for `--out`), `Airtwin-Capture-Sessions-Forgotten` (sessions beyond `--capture-sessions`) |
//! | `GET /faults` | the fault plan: index, fault, active, matched, applied |
//! | `POST /faults` | adds a fault (the scenario's `faults:` entry as JSON, checked as the scenario loader checks it); answers its index |
//! | `DELETE /faults/N` | removes fault N |
//! | `GET /events?since=N&wait=S` | the exchange log from event N on; waits up to S seconds (long poll) for one; `dropped` counts events older than the in-memory ring (`--events`), `first` is the oldest index answered |
//! | `POST /reset` | scenario faults back, runtime faults gone, names and volumes back |
//! | `POST /shutdown` | stops serve as SIGTERM does |
//!
//! Errors are `{"error": "reason"}` with a 4xx status (5xx only when airtwin itself fails).
//! Every request needs the ready file's token and a loopback `Host` (`crate::auth`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airtwin_simulators::device::{AudioError, STATE_KEYS};
use airtwin_simulators::fault::{Action, Fault, FaultPlan, Scope};
use airtwin_simulators::shell::{Acceptor, Recorder};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use tokio::task::JoinHandle;

use crate::devices::Device;
use crate::discovery::Discovery;

/// Largest request body the API reads.
const MAX_BODY: usize = 1 << 20;
/// Longest long poll.
const MAX_WAIT: f64 = 60.0;

/// What the control API works on: the running devices of one `serve`.
pub struct ServeState {
    pub devices: Vec<Device>,
    pub plan: Arc<FaultPlan>,
    pub recorder: Arc<Recorder>,
    pub discovery: Discovery,
    /// The scenario's faults, for reset.
    pub scenario_faults: Vec<Fault>,
    /// Per device, the name announced at start, for reset.
    initial_names: BTreeMap<String, String>,
    /// Notified by `POST /shutdown`.
    pub stop: Arc<Notify>,
    /// Serialises state changes (renames re-announce).
    edits: Mutex<()>,
}

impl ServeState {
    pub fn new(
        devices: Vec<Device>,
        plan: Arc<FaultPlan>,
        recorder: Arc<Recorder>,
        discovery: Discovery,
        scenario_faults: Vec<Fault>,
    ) -> Self {
        let initial_names = devices
            .iter()
            .filter_map(|d| Some((d.name.clone(), discovery.announced_name(&d.name)?)))
            .collect();
        ServeState {
            initial_names,
            devices,
            plan,
            recorder,
            discovery,
            scenario_faults,
            stop: Arc::new(Notify::new()),
            edits: Mutex::new(()),
        }
    }

    fn device(&self, name: &str) -> Result<&Device, ApiError> {
        self.devices.iter().find(|d| d.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.devices.iter().map(|d| d.name.as_str()).collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no device {name:?} (devices: {})", known.join(", ")),
            )
        })
    }

    /// One device as JSON.
    pub fn device_json(&self, d: &Device) -> Value {
        let ready = d.ready();
        let records = self.discovery.records_of(&d.name);
        let mut device = json!({
            "name": ready.name,
            "kind": ready.kind,
            "address": ready.address,
            "ports": ready.ports,
            "identity": ready.identity,
            "announced_name": self.discovery.announced_name(&d.name).unwrap_or_else(|| d.name.clone()),
            "mdns": records.map(|r| mdns_names(&r)).unwrap_or_default(),
            "state": d.state_json(),
        });
        // An Apple TV 4K shows its pairing PIN (docs/protocols/hap.md).
        if let Some(pin) = ready.identity.get("pin") {
            device["pin"] = json!(pin);
        }
        device
    }
}

/// The `<instance>.<service>.local` names of a device's records.
pub fn mdns_names(r: &airtwin_simulators::wire::dns_sd::HostRecords) -> Vec<Value> {
    r.services
        .iter()
        .map(|s| {
            json!({
                "service": s.service,
                "instance": s.instance,
                "fullname": s.fullname(),
                "host": format!("{}.local", r.host),
                "port": s.port,
            })
        })
        .collect()
}

/// An error answer: status and reason.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
        }
    }

    fn bad(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }
}

type Answer = Result<Response<Full<Bytes>>, ApiError>;

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn ok(v: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &v))
}

/// Binds the control API (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the API on `listener` until `shutdown` turns true.
pub fn spawn(
    listener: TcpListener,
    state: Arc<ServeState>,
    access: Arc<super::auth::Access>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut acceptor = Acceptor::new("control API");
        while let Some((stream, _)) = acceptor.accept(&listener, &mut shutdown).await {
            let state = state.clone();
            let access = access.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let access = access.clone();
                    async move {
                        let resp = match access.admit(req.headers()) {
                            Ok(()) => handle(&state, req).await,
                            Err(r) => json_response(r.status, &json!({ "error": r.reason })),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

async fn handle(state: &ServeState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match route(state, req).await {
        Ok(r) => r,
        Err(e) => json_response(e.status, &json!({ "error": e.reason })),
    }
}

async fn body_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("body is not JSON: {e}")))
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

fn number_param(req: &Request<Incoming>, key: &str) -> Result<Option<f64>, ApiError> {
    match query_param(req, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{key}={v:?} is not a non-negative number"))),
    }
}

async fn route(state: &ServeState, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let decoded: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(airtwin_simulators::wire::message::percent_decode)
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, parts.as_slice()) {
        (&Method::GET, []) => ok(json!({
            "endpoints": [
                "GET /devices", "GET /devices/NAME", "POST /devices/NAME/state",
                "GET /devices/NAME/audio", "GET /faults", "POST /faults", "DELETE /faults/N",
                "GET /events?since=N&wait=S", "POST /reset", "POST /shutdown"
            ]
        })),
        (&Method::GET, ["devices"]) => ok(Value::Array(
            state.devices.iter().map(|d| state.device_json(d)).collect(),
        )),
        (&Method::GET, ["devices", name]) => ok(state.device_json(state.device(name)?)),
        (&Method::POST | &Method::PATCH, ["devices", name, "state"]) => {
            let name = name.to_string();
            let body = body_json(req).await?;
            set_state(state, &name, &body)
        }
        (&Method::GET, ["devices", name, "audio"]) => audio(state, name),
        (&Method::GET, ["faults"]) => ok(serde_json::to_value(state.plan.status())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?),
        (&Method::POST, ["faults"]) => {
            let body = body_json(req).await?;
            let fault: Fault = serde_json::from_value(body)
                .map_err(|e| ApiError::bad(format!("not a fault: {e}")))?;
            check_fault(state, &fault)?;
            let index = state.plan.add(fault);
            Ok(json_response(
                StatusCode::CREATED,
                &json!({ "index": index }),
            ))
        }
        (&Method::DELETE, ["faults", index]) => {
            let index: usize = index
                .parse()
                .map_err(|_| ApiError::bad(format!("fault index {index:?} is not a number")))?;
            if state.plan.remove(index) {
                ok(json!({ "removed": index }))
            } else {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no active fault {index} (GET /faults lists them)"),
                ))
            }
        }
        (&Method::GET, ["events"]) => {
            let since = number_param(&req, "since")?.unwrap_or(0.0) as u64;
            let wait = number_param(&req, "wait")?.unwrap_or(0.0).min(MAX_WAIT);
            events(state, since, wait).await
        }
        (&Method::POST, ["reset"]) => reset(state),
        (&Method::POST, ["shutdown"]) => {
            state.stop.notify_one();
            ok(json!({ "stopping": true }))
        }
        (_, ["devices" | "faults" | "events" | "reset" | "shutdown", ..]) | (_, []) => {
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {path} is not supported (GET / lists the endpoints)"),
            ))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint {path} (GET / lists them)"),
        )),
    }
}

/// The checks of the scenario loader ([`Fault::validate`]), against the running devices. Faults
/// added at run time must be ones the devices can apply now: a `sign_with` key is loaded when a
/// device starts, so only keys the scenario already named work.
fn check_fault(state: &ServeState, fault: &Fault) -> Result<(), ApiError> {
    let devices: Vec<&str> = state.devices.iter().map(|d| d.name.as_str()).collect();
    let keys: Vec<&str> = state
        .scenario_faults
        .iter()
        .filter_map(|f| match &f.action {
            Action::SignWith(key) => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let scope = Scope {
        devices: Some(&devices),
        keys: Some(&keys),
    };
    fault
        .validate(&scope)
        .map_err(|e| ApiError::bad(e.to_string()))
}

/// `volume` (RAOP, dB: -144 mute or -30..0) and `name` (the announced name).
fn set_state(state: &ServeState, name: &str, body: &Value) -> Answer {
    let device = state.device(name)?;
    let Value::Object(fields) = body else {
        return Err(ApiError::bad(
            "body must be a JSON object, e.g. {\"volume\": -15}",
        ));
    };
    const SUPPORTED: &str = "volume (RAOP receivers, dB), name (the announced name), and for DACP devices now_playing, play_state, position, next";
    for key in fields.keys() {
        if key != "name" && !STATE_KEYS.contains(&key.as_str()) {
            return Err(ApiError::bad(format!(
                "unknown state key {key:?}; supported: {SUPPORTED}"
            )));
        }
    }
    let _guard = state.edits.lock().unwrap_or_else(|e| e.into_inner());
    let mut changes = fields.clone();
    changes.remove("name");
    device
        .set_state(&changes)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    if let Some(v) = fields.get("name") {
        let new = v
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= 63)
            .ok_or_else(|| ApiError::bad("name must be a string of 1 to 63 bytes"))?;
        state
            .discovery
            .rename(device, new)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    }
    ok(state.device_json(device))
}

fn audio(state: &ServeState, name: &str) -> Answer {
    let device = state.device(name)?;
    let wav = device.wav().map_err(|e| match e {
        AudioError::NoReceiver(_) | AudioError::Nothing(_) => {
            ApiError::new(StatusCode::NOT_FOUND, e.to_string())
        }
        AudioError::Wav(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    })?;
    // The WAV holds what is still in memory: the window of each session kept. The headers say
    // how much left it (`--out` has it all).
    let capture = device.state_value("capture");
    let sessions = capture["sessions"].as_array().cloned().unwrap_or_default();
    let handed_on: u64 = sessions
        .iter()
        .filter_map(|s| s["handed_on"].as_u64())
        .sum();
    let window = match capture["window"].as_u64() {
        Some(w) => w.to_string(),
        None => "all".to_string(),
    };
    Response::builder()
        .header("Content-Type", "audio/wav")
        .header("Airtwin-Capture-Window", window)
        .header("Airtwin-Capture-Handed-On", handed_on.to_string())
        .header(
            "Airtwin-Capture-Sessions-Forgotten",
            capture["sessions_forgotten"]
                .as_u64()
                .unwrap_or(0)
                .to_string(),
        )
        .body(Full::new(Bytes::from(wav)))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn events(state: &ServeState, since: u64, wait: f64) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
    loop {
        let found = state.recorder.since(since);
        let now = tokio::time::Instant::now();
        if !found.events.is_empty() || found.dropped > 0 || now >= deadline {
            // `first` is the index of `events[0]`; `dropped` events between `since` and `first`
            // are no longer in memory (the ring of `--events`), only in `--out`'s events.jsonl.
            return ok(json!({
                "since": since,
                "first": found.first,
                "dropped": found.dropped,
                "next": found.next(),
                "events": found.events,
            }));
        }
        // The recorder wakes waiters that are already waiting; an event recorded between the
        // look above and this wait is caught by the next look, at most 100 ms later.
        let slice = (deadline - now).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(slice, state.recorder.changed()).await;
    }
}

fn reset(state: &ServeState) -> Answer {
    let _guard = state.edits.lock().unwrap_or_else(|e| e.into_inner());
    let removed = state.plan.clear();
    let mut restored = Vec::new();
    for f in &state.scenario_faults {
        restored.push(state.plan.add(f.clone()));
    }
    for d in &state.devices {
        d.reset_state();
        let initial = state.initial_names.get(&d.name).unwrap_or(&d.name);
        if state.discovery.announced_name(&d.name).as_ref() != Some(initial) {
            state
                .discovery
                .rename(d, initial)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        }
    }
    ok(json!({
        "faults_removed": removed,
        "scenario_faults": restored,
        "events": state.recorder.len(),
    }))
}
