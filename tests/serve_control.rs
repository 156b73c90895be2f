//! `airtwin serve` as a client developer uses it: the ready file, the control API over real HTTP,
//! `airtwin ctl`, DNS-SD on 127.0.0.1, robustness under malformed input and thousands of
//! connections, and discovery: unicast on the host, mDNS only inside `ci/netns`.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airtwin_conformance::{airtwin, require_peers, root, run, scratch, text, wait_for_json};
use serde_json::{json, Value};
use simple_dns::{Name, Packet, Question, CLASS, QCLASS, QTYPE, TYPE};

/// A running `airtwin serve` with its ready file; killed when dropped.
struct Serve {
    child: Child,
    ready: Value,
    ready_path: PathBuf,
    dir: PathBuf,
}

impl Serve {
    fn start(name: &str, args: &[&str]) -> Serve {
        Self::start_with(name, None, args)
    }

    /// `wrapper` runs serve through another command (ci/netns).
    fn start_with(name: &str, wrapper: Option<&Path>, args: &[&str]) -> Serve {
        let dir = scratch(name);
        let ready_path = dir.join("ready.json");
        let mut cmd = match wrapper {
            Some(w) => {
                let mut c = Command::new(w);
                c.arg(airtwin());
                c
            }
            None => Command::new(airtwin()),
        };
        cmd.arg("serve")
            .args(args)
            .arg("--ready-file")
            .arg(&ready_path)
            .arg("--out")
            .arg(dir.join("out"))
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap());
        let child = cmd.spawn().unwrap();
        let ready = wait_for_json(&ready_path, Duration::from_secs(30));
        Serve {
            child,
            ready,
            ready_path,
            dir,
        }
    }

    /// The control API, with the token from the ready file.
    fn control(&self) -> ::airtwin::serve::ctl::Api {
        ::airtwin::serve::ctl::Api::from_ready_file(&self.ready_path).expect("ready file")
    }

    fn pid(&self) -> u32 {
        self.ready["pid"].as_u64().expect("pid") as u32
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, bytes) = http(self.control(), method, path, body);
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    /// Waits for the process to end (after SIGTERM or POST /shutdown).
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "serve did not stop within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // airtwin itself first (its pid is in the ready file): through ci/netns, the child is
        // the wrapper script, and killing it alone would leave airtwin running.
        if let Some(pid) = self.ready["pid"].as_i64() {
            if self.child.try_wait().ok().flatten().is_none() {
                unsafe { libc_kill(pid as i32, 15) };
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(10) {
                    if self.child.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// One request to the control API through the client `airtwin ctl` uses: status and body.
fn http(
    api: ::airtwin::serve::ctl::Api,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Vec<u8>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(api.request(method, path, body))
        .unwrap()
}

/// The status of one raw HTTP/1.1 request (headers exactly as given) to the control API.
fn raw_status(api: &::airtwin::serve::ctl::Api, head: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(api.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {raw:?}"))
}

#[test]
fn control_api_refuses_all_but_its_owner() {
    let serve = Serve::start("control-owner", &["--device", "airport-express=den"]);
    let api = serve.control();
    let port = api.addr.port();
    let token = &api.token;
    // The ready file holds the token: only its owner may read it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&serve.ready_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ready file mode {mode:o}");
    assert_eq!(token.len(), 64);
    let fault = r#"{"when": {"method": "OPTIONS"}, "action": "drop"}"#;
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let auth = format!("Authorization: Bearer {token}\r\n");
    for (what, head, want) in [
        ("no token", format!("POST /faults HTTP/1.1\r\n{host}"), 401),
        (
            "a wrong token",
            format!(
                "POST /faults HTTP/1.1\r\n{host}Authorization: Bearer {}\r\n",
                "0".repeat(64)
            ),
            401,
        ),
        (
            "a page elsewhere (CSRF with text/plain)",
            format!(
                "POST /faults HTTP/1.1\r\n{host}{auth}Origin: http://evil.example\r\n\
                 Content-Type: text/plain\r\n"
            ),
            403,
        ),
        (
            "a foreign Host (DNS rebinding)",
            format!("POST /faults HTTP/1.1\r\nHost: evil.example:{port}\r\n{auth}"),
            403,
        ),
    ] {
        assert_eq!(raw_status(&api, &head, fault), want, "{what}");
    }
    let (_, faults) = serve.call("GET", "/faults", None);
    assert_eq!(
        faults.as_array().map(Vec::len),
        Some(0),
        "a refused request added a fault: {faults}"
    );
    // The owner, on any loopback name, and a same-origin page are served.
    for name in ["127.0.0.1", "localhost"] {
        let head = format!(
            "GET /devices HTTP/1.1\r\nHost: {name}:{port}\r\n{auth}Origin: http://{name}:{port}\r\n"
        );
        assert_eq!(raw_status(&api, &head, ""), 200, "{name}");
    }
    let head = format!("POST /faults HTTP/1.1\r\n{host}{auth}Content-Type: application/json\r\n");
    assert_eq!(raw_status(&api, &head, fault), 201);
}

/// Asks the DNS-SD responder for the PTR records of `service` and returns the instance names.
fn dns_sd_instances(port: u16, service: &str) -> Vec<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = Packet::new_query(7);
    q.questions.push(Question::new(
        Name::new_unchecked(service),
        QTYPE::TYPE(TYPE::PTR),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    sock.send_to(&q.build_bytes_vec().unwrap(), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 9000];
    let n = sock.recv(&mut buf).expect("a DNS-SD answer");
    let p = Packet::parse(&buf[..n]).unwrap();
    assert_eq!(p.id(), 7);
    p.answers
        .iter()
        .filter_map(|r| match &r.rdata {
            simple_dns::rdata::RData::PTR(ptr) => {
                Some(String::from_utf8_lossy(ptr.0.get_labels()[0].as_ref()).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn rtsp_options(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serve_is_driven_through_the_ready_file_and_the_control_api() {
    let mut serve = Serve::start("serve-control", &["--device", "airport-express=den"]);
    let r = &serve.ready;
    // The ready file: devices with ports, identity and DNS-SD names; serve's own ports.
    let dev = &r["devices"][0];
    assert_eq!(dev["name"], "den");
    let raop = dev["ports"]["raop"].as_u64().unwrap() as u16;
    assert_eq!(dev["mdns"][0]["service"], "_raop._tcp");
    assert_eq!(dev["mdns"][0]["instance"], "001124004491@den");
    assert_eq!(r["discovery"], "unicast");
    let dns_sd = r["ports"]["dns-sd"].as_u64().expect("ports.dns-sd") as u16;
    assert_eq!(
        dns_sd_instances(dns_sd, "_raop._tcp.local"),
        ["001124004491@den"]
    );

    // List, then change state live: volume and the announced name.
    let (status, list) = serve.call("GET", "/devices", None);
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "den");
    let (status, after) = serve.call(
        "POST",
        "/devices/den/state",
        Some(&json!({"volume": -15.0, "name": "Den Speaker"})),
    );
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["state"]["volume"], -15.0);
    assert_eq!(after["announced_name"], "Den Speaker");
    assert_eq!(
        dns_sd_instances(dns_sd, "_raop._tcp.local"),
        ["001124004491@Den Speaker"]
    );

    // Errors are JSON with a reason and a 4xx status.
    for (method, path, body, want) in [
        (
            "POST",
            "/devices/nope/state",
            Some(json!({"volume": -1})),
            404,
        ),
        (
            "POST",
            "/devices/den/state",
            Some(json!({"volume": 5})),
            400,
        ),
        (
            "POST",
            "/devices/den/state",
            Some(json!({"colour": "red"})),
            400,
        ),
        ("POST", "/faults", Some(json!({"action": "explode"})), 400),
        ("DELETE", "/faults/99", None, 404),
        ("GET", "/events?since=abc", None, 400),
        ("GET", "/nothing", None, 404),
        ("PUT", "/devices", None, 405),
    ] {
        let (status, v) = serve.call(method, path, body.as_ref());
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    let (status, bytes) = http(serve.control(), "POST", "/faults", None);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bytes));

    // A fault added at run time applies at once; removed, it stops.
    let (status, added) = serve.call(
        "POST",
        "/faults",
        Some(&json!({"when": {"method": "OPTIONS"}, "action": {"respond": {"status": 503}}})),
    );
    assert_eq!(status, 201, "{added}");
    let index = added["index"].as_u64().unwrap();
    assert!(rtsp_options(raop).starts_with("RTSP/1.0 503"));
    let (status, _) = serve.call("DELETE", &format!("/faults/{index}"), None);
    assert_eq!(status, 200);
    assert!(rtsp_options(raop).starts_with("RTSP/1.0 200"));
    let (_, faults) = serve.call("GET", "/faults", None);
    assert_eq!(faults[0]["applied"], 1);
    assert_eq!(faults[0]["active"], false);

    // The exchange log, then a long poll that an exchange ends early.
    let (_, log) = serve.call("GET", "/events?since=0", None);
    let next = log["next"].as_u64().unwrap();
    assert!(log["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"]["type"] == "request" && e["kind"]["method"] == "OPTIONS"));
    let control = serve.control();
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let (status, body) = http(
            control,
            "GET",
            &format!("/events?since={next}&wait=20"),
            None,
        );
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap(),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    rtsp_options(raop);
    let (status, polled, took) = poll.join().unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(10), "long poll took {took:?}");
    assert!(!polled["events"].as_array().unwrap().is_empty(), "{polled}");

    // Audio received, read back as WAV.
    let (status, _) = http(serve.control(), "GET", "/devices/den/audio", None);
    assert_eq!(status, 404, "no audio yet");
    let out = run(&[
        "client",
        "raop",
        "--to",
        &format!("127.0.0.1:{raop}"),
        "scenarios/media/tone-1s.wav",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (status, wav) = http(serve.control(), "GET", "/devices/den/audio", None);
    assert_eq!(status, 200);
    assert!(wav.starts_with(b"RIFF") && wav.len() > 44 + 44_100 * 4 / 2);

    // airtwin ctl over the same API.
    let ready = serve.ready_path.to_str().unwrap().to_string();
    let out = run(&["ctl", "--ready-file", &ready, "set", "den", "volume=-20"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("-20"), "{stdout}");
    let out = run(&["ctl", "--ready-file", &ready, "remove-fault", "42"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no active fault 42"), "{stderr}");
    let out = run(&[
        "ctl",
        "--ready-file",
        &ready,
        "add-fault",
        "{when: {method: OPTIONS}, action: drop, times: 1}",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run(&["ctl", "--ready-file", &ready, "reset"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, dev) = serve.call("GET", "/devices/den", None);
    assert_eq!(dev["announced_name"], "den", "reset restores the name");
    let (_, faults) = serve.call("GET", "/faults", None);
    assert!(faults
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["active"] == false));

    // Shutdown through the API: clean exit, transcript flushed, ready file removed.
    let out = run(&["ctl", "--ready-file", &ready, "shutdown"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(serve.wait(Duration::from_secs(15)).success());
    assert!(!serve.ready_path.exists(), "ready file left behind");
    let transcript = std::fs::read_to_string(serve.dir.join("out/transcript.txt")).unwrap();
    assert!(transcript.contains("→ RECORD"), "{transcript}");
    // The capture was streamed to --out as it came (serve keeps only a window in memory).
    let streamed = std::fs::read(serve.dir.join("out/den-session0.wav")).unwrap();
    assert_eq!(&streamed[..4], b"RIFF");
    assert_eq!(streamed, wav, "the streamed WAV holds the same audio");
}

/// Socket inodes of a process's descriptors.
fn socket_inodes(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                out.push(inode.to_string());
            }
        }
    }
    out
}

/// Local UDP ports (IPv4 and IPv6) of the sockets `pid` holds, from /proc/PID/net/udp{,6}.
fn udp_ports_of(pid: u32) -> Vec<u16> {
    let inodes = socket_inodes(pid);
    let mut ports = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Whether the process runs mdns-sd's daemon thread (named `mDNS_daemon`).
fn has_mdns_thread(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .any(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "mDNS_daemon")
        })
}

#[test]
fn discovery_none_opens_no_multicast_socket_and_unicast_only_one_udp_port() {
    let serve = Serve::start(
        "discovery-none",
        &["--device", "apple-tv=tv", "--discovery", "none"],
    );
    let pid = serve.pid();
    assert!(
        serve.ready["ports"].get("dns-sd").is_none(),
        "{}",
        serve.ready
    );
    assert!(
        !has_mdns_thread(pid),
        "discovery none started the mDNS daemon"
    );
    assert_eq!(udp_ports_of(pid), Vec::<u16>::new(), "no UDP socket at all");
    drop(serve);

    let serve = Serve::start(
        "discovery-unicast",
        &["--device", "apple-tv=tv", "--discovery", "unicast"],
    );
    let pid = serve.pid();
    let dns_sd = serve.ready["ports"]["dns-sd"].as_u64().unwrap() as u16;
    assert!(!has_mdns_thread(pid));
    assert_eq!(udp_ports_of(pid), vec![dns_sd], "only the DNS-SD responder");
    assert!(!udp_ports_of(pid).contains(&5353));
}

/// `ci/netns --check` must say yes: the namespace tests fail (never skip) where it cannot.
fn require_netns() -> PathBuf {
    let script = root().join("ci/netns");
    let out = Command::new(&script).arg("--check").output().unwrap();
    assert!(
        out.status.success(),
        "private network namespaces are needed for the mDNS tests (house rule: no multicast \
         outside one): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    script
}

#[test]
fn multicast_discovery_runs_only_inside_the_namespace_and_the_probe_sees_it() {
    let netns = require_netns();
    // The same probe as above sees the mDNS daemon and port 5353 when they are there.
    let serve = Serve::start_with(
        "discovery-netns",
        Some(&netns),
        &[
            "--device",
            "airport-express=den",
            "--discovery",
            "interfaces:airtwin0",
        ],
    );
    let pid = serve.pid();
    assert!(has_mdns_thread(pid), "interfaces mode runs mdns-sd");
    assert!(udp_ports_of(pid).contains(&5353), "{:?}", udp_ports_of(pid));
}

#[test]
fn discovery_scenarios_pass_unicast_on_the_host_and_multicast_inside_ci_netns() {
    require_peers();
    require_netns();
    let dir = scratch("discovery-scenarios");
    let out = run(&[
        "run",
        "scenarios/discovery",
        "scenarios/netns",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS  discovery-unicast-scan"), "{stdout}");
    assert!(stdout.contains("PASS  netns-multicast-scan"), "{stdout}");
}

#[test]
fn serve_survives_malformed_input_vanishing_clients_and_2000_connections() {
    let serve = Serve::start("robust", &["--device", "apple-tv=tv"]);
    let ports = &serve.ready["devices"][0]["ports"];
    let airplay = ports["airplay"].as_u64().unwrap() as u16;
    let dacp = ports["dacp"].as_u64().unwrap() as u16;
    let control = serve.control().addr.port();
    let dns_sd = serve.ready["ports"]["dns-sd"].as_u64().unwrap() as u16;
    let started = Instant::now();
    let garbage: [&[u8]; 5] = [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /fp-setup RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nFP",
        b"GET /devices HTTP/1.1\r\n\xc3\x28: x\r\n\r\n",
    ];
    for port in [airplay, dacp, control] {
        for g in garbage {
            // Malformed input, then the client vanishes mid-exchange.
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = s.write_all(g);
            drop(s);
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(g);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for g in garbage {
        udp.send_to(g, ("127.0.0.1", dns_sd)).unwrap();
    }
    // 2,000 connections, 500 open at once, each asking OPTIONS or hanging up at once.
    let mut answered = 0;
    for batch in 0..4 {
        let mut open = Vec::new();
        for i in 0..500 {
            let mut s = TcpStream::connect(("127.0.0.1", airplay)).unwrap();
            if (batch * 500 + i) % 2 == 0 {
                s.write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
                    .unwrap();
            }
            open.push((i, s));
        }
        for (i, mut s) in open {
            if (batch * 500 + i) % 2 == 0 {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && &buf == b"RTSP/1.0 200" {
                    answered += 1;
                }
            }
        }
    }
    assert_eq!(
        answered, 1000,
        "every OPTIONS of the 2,000 connections answered"
    );
    // Still serving on every port.
    assert!(rtsp_options(airplay).starts_with("RTSP/1.0 200"));
    let (status, _) = http(serve.control(), "GET", "/devices", None);
    assert_eq!(status, 200);
    assert_eq!(
        dns_sd_instances(dns_sd, "_airplay._tcp.local"),
        ["tv"],
        "DNS-SD still answers"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn post_faults_refuses_what_the_scenario_loader_refuses() {
    let serve = Serve::start("serve-fault-checks", &["--device", "airport-express=den"]);
    for (fault, reason) in [
        (
            json!({"action": {"lose_packets": 5}}),
            "action.lose_packets: must be between 0 and 1",
        ),
        (
            json!({"action": "drop", "probability": 2}),
            "probability: must be between 0 and 1",
        ),
        (
            json!({"when": {"device": "attic"}, "action": "drop"}),
            "when.device: no device named \"attic\" (devices: den)",
        ),
        (
            json!({"action": {"sign_with": "other.pem"}}),
            "action.sign_with: \"other.pem\": keys are loaded when the devices start",
        ),
    ] {
        let (status, v) = serve.call("POST", "/faults", Some(&fault));
        assert_eq!(status, 400, "{fault}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(reason), "{fault}: {error}");
    }
    let (_, faults) = serve.call("GET", "/faults", None);
    assert_eq!(faults, json!([]), "nothing refused was added");
    let (status, v) = serve.call(
        "POST",
        "/faults",
        Some(&json!({"action": {"lose_packets": 0.5}})),
    );
    assert_eq!(status, 201, "{v}");
}

#[test]
fn now_playing_changes_live_through_the_control_api() {
    let serve = Serve::start("serve-now-playing", &["--device", "itunes=lib"]);
    let (status, before) = serve.call("GET", "/devices/lib", None);
    assert_eq!(status, 200, "{before}");
    let revision = before["state"]["dacp"]["revision"]
        .as_u64()
        .expect("dacp.revision");
    let (status, after) = serve.call(
        "POST",
        "/devices/lib/state",
        Some(&json!({
            "now_playing": {"title": "Live Title", "artist": "Control API", "duration": 200.0},
            "play_state": "paused",
            "position": 42.0
        })),
    );
    assert_eq!(status, 200, "{after}");
    let dacp = &after["state"]["dacp"];
    assert_eq!(dacp["title"], "Live Title", "{dacp}");
    assert_eq!(dacp["artist"], "Control API", "{dacp}");
    assert_eq!(dacp["state"], "paused", "{dacp}");
    assert!(dacp["revision"].as_u64().unwrap() > revision, "{dacp}");
    // Keys a device has no part for, and bad values, are refused with a reason.
    let (status, err) = serve.call(
        "POST",
        "/devices/lib/state",
        Some(&json!({"play_state": "dancing"})),
    );
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("dancing"), "{err}");
    let (status, err) = serve.call(
        "POST",
        "/devices/lib/state",
        Some(&json!({"volume": -10.0})),
    );
    assert_eq!(status, 400, "{err}");
}

#[test]
fn companion_power_and_app_change_live_through_the_control_api() {
    let serve = Serve::start(
        "serve-companion",
        &["scenarios/apple-tv-4k/own-client-companion.yaml"],
    );
    let (status, after) = serve.call(
        "POST",
        "/devices/tv/state",
        Some(&json!({"power": "off", "app": "com.netflix.Netflix"})),
    );
    assert_eq!(status, 200, "{after}");
    let c = &after["state"]["companion"];
    assert_eq!(c["power"], "off", "{c}");
    assert_eq!(c["current_app"], "com.netflix.Netflix", "{c}");
    let (status, err) = serve.call(
        "POST",
        "/devices/tv/state",
        Some(&json!({"app": "com.example.none"})),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("not installed"),
        "{err}"
    );
    let (status, err) = serve.call(
        "POST",
        "/devices/tv/state",
        Some(&json!({"power": "standby"})),
    );
    assert_eq!(status, 400, "{err}");
}

/// RFC 6762 §10.1: on shutdown a responder sends its records again with TTL 0 ("goodbye"), and
/// browsers drop the service at once instead of waiting for the TTL (minutes). A real browser
/// (python-zeroconf, from pyatv's venv) watches inside the namespace while serve stops.
#[test]
fn serve_sends_mdns_goodbyes_that_a_real_browser_sees() {
    let netns = require_netns();
    require_peers();
    let dir = scratch("goodbye");
    let out = Command::new(&netns)
        .arg("bash")
        .arg("tests/fixtures/goodbye.sh")
        .arg(airtwin())
        .arg(root().join("target/peers/venv/bin/python"))
        .arg(&dir)
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = "001124004491@Kitchen._raop._tcp.local.";
    let added = text.find(&format!("added {name}"));
    let removed = text.find(&format!("removed {name}"));
    assert!(
        matches!((added, removed), (Some(a), Some(r)) if a < r),
        "the browser saw no announcement then goodbye for {name}:\n{text}"
    );
    assert!(!text.contains("serve exited"), "{text}");
}

#[test]
fn events_beyond_the_ring_are_reported_dropped_and_stay_in_the_streamed_log() {
    let mut serve = Serve::start(
        "serve-events-ring",
        &["--device", "airport-express=den", "--events", "5"],
    );
    let raop = serve.ready["devices"][0]["ports"]["raop"].as_u64().unwrap() as u16;
    for _ in 0..10 {
        assert!(rtsp_options(raop).starts_with("RTSP/1.0 200"));
    }
    let (status, log) = serve.call("GET", "/events?since=0", None);
    assert_eq!(status, 200, "{log}");
    let kept = log["events"].as_array().unwrap().len() as u64;
    let (first, dropped, next) = (
        log["first"].as_u64().unwrap(),
        log["dropped"].as_u64().unwrap(),
        log["next"].as_u64().unwrap(),
    );
    assert!(kept <= 5, "the ring keeps at most 5 events: {log}");
    assert_eq!(dropped, first, "asked from 0: {log}");
    assert!(
        dropped >= 20,
        "10 exchanges recorded more than 5 events: {log}"
    );
    assert_eq!(first + kept, next, "{log}");
    // The events still in memory are answered from their own index on.
    let (_, recent) = serve.call("GET", &format!("/events?since={}", next - 1), None);
    assert_eq!(recent["dropped"], 0, "{recent}");
    assert_eq!(recent["first"], next - 1, "{recent}");
    assert!(!recent["events"].as_array().unwrap().is_empty(), "{recent}");

    // Everything the ring forgot is in --out, written as it happened (serve still runs).
    let jsonl = std::fs::read_to_string(serve.dir.join("out/events.jsonl")).unwrap();
    assert!(jsonl.lines().count() as u64 >= next, "{jsonl}");
    let requests = jsonl
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["kind"]["type"] == "request")
        .count();
    assert_eq!(requests, 10, "{jsonl}");
    let transcript = std::fs::read_to_string(serve.dir.join("out/transcript.txt")).unwrap();
    assert_eq!(transcript.matches("→ OPTIONS").count(), 10, "{transcript}");

    let (status, _) = serve.call("POST", "/shutdown", None);
    assert_eq!(status, 200);
    assert!(serve.wait(Duration::from_secs(15)).success());
    let transcript = std::fs::read_to_string(serve.dir.join("out/transcript.txt")).unwrap();
    assert!(transcript.contains("result PASS"), "{transcript}");
    assert_eq!(transcript.matches("→ OPTIONS").count(), 10, "{transcript}");
}

/// CPU time (user + system, clock ticks) a process used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15 (proc(5)).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `serve` with an AirPort Express, started with 64 file descriptors (`prlimit`), and 100
/// connections to its RAOP port: more than it has descriptors for, so the kernel queues the rest
/// in the listen backlog. Returns serve, the RAOP port and the connections.
fn out_of_descriptors(name: &str) -> (Serve, u16, Vec<TcpStream>) {
    let dir = scratch(&format!("{name}-wrapper"));
    let wrapper = dir.join("prlimit-64");
    std::fs::write(&wrapper, "#!/bin/sh\nexec prlimit --nofile=64:64 \"$@\"\n").unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let serve = Serve::start_with(name, Some(&wrapper), &["--device", "airport-express=den"]);
    let raop = serve.ready["devices"][0]["ports"]["raop"].as_u64().unwrap() as u16;
    let held = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", raop)).unwrap())
        .collect();
    (serve, raop, held)
}

#[test]
fn out_of_descriptors_serve_waits_without_spinning_and_serves_again_when_connections_close() {
    let (serve, raop, held) = out_of_descriptors("serve-emfile");
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(serve.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(serve.pid()) - before;
    // A spinning accept loop burns a whole core (about 200 ticks in 2 s); backing off, none.
    assert!(
        used < 100,
        "serve used {used} ticks in 2 s while out of descriptors"
    );
    let stderr = std::fs::read_to_string(serve.dir.join("stderr.txt")).unwrap();
    assert_eq!(stderr.matches("accept failed").count(), 1, "{stderr}");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = std::panic::catch_unwind(|| rtsp_options(raop)).unwrap_or_default();
        if answer.starts_with("RTSP/1.0 200") {
            break;
        }
        assert!(Instant::now() < deadline, "serve did not answer again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = serve.call("GET", "/devices", None);
    assert_eq!(status, 200);
    let stderr = std::fs::read_to_string(serve.dir.join("stderr.txt")).unwrap();
    assert!(stderr.contains("accepting again"), "{stderr}");
}

#[test]
fn out_of_descriptors_the_control_api_waits_without_spinning_and_answers_when_connections_close() {
    let (serve, _, held) = out_of_descriptors("serve-emfile-control");
    std::thread::sleep(Duration::from_millis(500));
    // A control request now waits in the API's listen backlog.
    let api = serve.control();
    let waiting = std::thread::spawn(move || http(api, "GET", "/devices", None).0);
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(serve.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(serve.pid()) - before;
    assert!(
        used < 100,
        "serve used {used} ticks in 2 s while out of descriptors"
    );
    let stderr = std::fs::read_to_string(serve.dir.join("stderr.txt")).unwrap();
    let control_failures = stderr
        .lines()
        .filter(|l| l.contains("control API") && l.contains("accept failed"))
        .count();
    assert_eq!(control_failures, 1, "{stderr}");
    assert!(!waiting.is_finished(), "answered without a descriptor?");

    drop(held);
    assert_eq!(waiting.join().unwrap(), 200);
    let stderr = std::fs::read_to_string(serve.dir.join("stderr.txt")).unwrap();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("control API") && l.contains("accepting again")),
        "{stderr}"
    );
}

/// pyatv pairs `airtwin serve`'s Apple TV 4K (PIN from stdin) with `atvremote pair` for one
/// protocol; returns the credentials it prints.
fn atvremote_pair(dns_sd: u16, mac: &str, protocol: &str, pin: &str) -> String {
    let atvremote = root().join("target/peers/venv/bin/atvremote");
    let mut child = Command::new(&atvremote)
        .args([
            "--storage",
            "none",
            "-s",
            "127.0.0.1",
            "--id",
            mac,
            "--protocol",
            protocol,
            "pair",
        ])
        .env("PYATV_UDNS_PORT", dns_sd.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pin}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    stdout
        .lines()
        .find_map(|l| l.split("credentials: ").nth(1))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{protocol} pairing printed no credentials:\n{stdout}\n{stderr}"))
}

/// Waits until the file at `path` contains `what`, or panics with what it holds.
fn wait_for_text(path: &Path, what: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(what) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "no {what:?} within {limit:?} in:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// pyatv's `push_updates` over the MRP tunnel sees a change made through the control API: the
/// now-playing model DACP and MRP share is changed by `POST /devices/tv/state`, and the data
/// stream pushes a new SET_STATE (docs/protocols/mrp.md, "One now-playing model").
#[test]
fn mrp_push_updates_see_a_now_playing_change_made_through_the_control_api() {
    require_peers();
    let serve = Serve::start(
        "serve-mrp-push",
        &["scenarios/apple-tv-4k/pyatv-mrp-playing.yaml"],
    );
    let dns_sd = serve.ready["ports"]["dns-sd"]
        .as_u64()
        .expect("ports.dns-sd") as u16;
    let mac = "58:55:CA:1A:2B:61";
    let airplay = atvremote_pair(dns_sd, mac, "airplay", "2468");
    let companion = atvremote_pair(dns_sd, mac, "companion", "2468");
    let log = serve.dir.join("push_updates.txt");
    // push_updates listens until its stdin closes; the test holds it open.
    let mut child = Command::new(root().join("target/peers/venv/bin/atvremote"))
        .args(["--storage", "none", "-s", "127.0.0.1", "--id", mac])
        .args([
            "--airplay-credentials",
            &airplay,
            "--companion-credentials",
            &companion,
        ])
        .arg("push_updates")
        .env("PYATV_UDNS_PORT", dns_sd.to_string())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_text(&log, "Title: Tunnel Vision", Duration::from_secs(30));
    let (status, after) = serve.call(
        "POST",
        "/devices/tv/state",
        Some(&json!({
            "now_playing": {"title": "Live From Control", "artist": "Control API", "duration": 120.0},
            "play_state": "paused"
        })),
    );
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["state"]["now_playing"]["title"], "Live From Control");
    let seen = wait_for_text(&log, "Title: Live From Control", Duration::from_secs(10));
    drop(child.stdin.take());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("Device state: Paused"), "{seen}");
    let (_, dev) = serve.call("GET", "/devices/tv", None);
    assert!(
        dev["state"]["mrp"]["set_states"].as_u64().unwrap() >= 2,
        "{dev}"
    );
}

/// Sends `head` and `body` on a new connection to `port` and leaves it open.
fn send_partial(port: u16, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// Everything the device answers until it closes the connection.
fn read_to_close(s: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn buffered_bytes_are_capped_per_connection_and_in_total_with_a_clear_answer() {
    // A total budget of 2 KiB over every device of the serve.
    let serve = Serve::start(
        "serve-buffer-budget",
        &[
            "--device",
            "airport-express=den",
            "--device",
            "itunes=lib",
            "--buffer-budget",
            "2KiB",
        ],
    );
    let raop = serve.ready["devices"][0]["ports"]["raop"].as_u64().unwrap() as u16;
    let dacp = serve.ready["devices"][1]["ports"]["dacp"].as_u64().unwrap() as u16;
    let pid = serve.pid();
    let before = cpu_ticks(pid);

    // Per connection: a body larger than a device reads (4 MiB) is refused from its head.
    let mut big = send_partial(
        raop,
        "SET_PARAMETER rtsp://127.0.0.1/1 RTSP/1.0\r\nCSeq: 1\r\nContent-Type: text/parameters\r\nContent-Length: 5242880\r\n\r\n",
        b"volume: -10",
    );
    let answer = read_to_close(&mut big);
    assert!(answer.starts_with("RTSP/1.0 413"), "{answer}");
    assert!(
        answer.contains("body of 5242880 bytes exceeds the 4194304-byte limit"),
        "{answer}"
    );

    // In total: two half-sent bodies on two devices, each under every per-connection cap,
    // together over the 2 KiB the serve holds. The one that grows past it is answered 503.
    let head = "SET_PARAMETER rtsp://127.0.0.1/1 RTSP/1.0\r\nCSeq: 2\r\nContent-Type: text/parameters\r\nContent-Length: 100000\r\n\r\n";
    let first = send_partial(raop, head, &[b'x'; 1200]);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = send_partial(
        dacp,
        "POST /ctrl-int/1/playqueue-edit HTTP/1.1\r\nHost: lib\r\nContent-Length: 100000\r\n\r\n",
        &[b'y'; 1200],
    );
    let answer = read_to_close(&mut second);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("device buffers full"), "{answer}");
    let stderr = std::fs::read_to_string(serve.dir.join("stderr.txt")).unwrap();
    assert!(stderr.contains("device buffers full"), "{stderr}");

    // While the first still holds its bytes, a small request fits beside it.
    assert!(rtsp_options(raop).starts_with("RTSP/1.0 200"));
    // And once it goes, the budget is whole again: a second 1200-byte half-body is held.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let held = send_partial(
        dacp,
        "POST /ctrl-int/1/playqueue-edit HTTP/1.1\r\nHost: lib\r\nContent-Length: 100000\r\n\r\n",
        &[b'z'; 1200],
    );
    let mut other = send_partial(raop, head, &[b'w'; 300]);
    other
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(other.read(&mut byte), Err(ref e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "some 1700 bytes in all fit the budget and are waited on, not refused"
    );
    // Answers count too (held until written): with both gone, an exchange fits again.
    drop((held, other));
    std::thread::sleep(Duration::from_millis(300));
    let answer = rtsp_options(raop);
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 200,
        "serve used {used} ticks refusing a few connections"
    );
}

#[test]
fn airplay2_audio_captures_in_serve_keep_the_window_and_count_what_left_it() {
    require_peers();
    let mut serve = Serve::start(
        "serve-airplay2-capture",
        &[
            "scenarios/apple-tv-4k/pyatv-stream-airplay2.yaml",
            "--capture-window",
            "16",
            "--capture-sessions",
            "1",
        ],
    );
    let dns_sd = serve.ready["ports"]["dns-sd"]
        .as_u64()
        .expect("dns-sd port");
    let wav = root().join("scenarios/media/tone-1s.wav");
    // Two streams of 1 s (about 125 packets each): beyond the window, and beyond the sessions kept.
    for _ in 0..2 {
        let out = Command::new(root().join("target/peers/venv/bin/atvremote"))
            .args([
                "--storage",
                "none",
                "-s",
                "127.0.0.1",
                "--id",
                "58:55:CA:1A:2B:4D",
                &format!("stream_file={}", wav.display()),
            ])
            .env("PYATV_UDNS_PORT", dns_sd.to_string())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
    }
    let (status, tv) = serve.call("GET", "/devices/tv", None);
    assert_eq!(status, 200, "{tv}");
    let capture = &tv["state"]["capture"];
    assert_eq!(capture["window"], 16, "{tv}");
    assert_eq!(capture["sessions_kept"], 1, "{tv}");
    assert_eq!(capture["sessions_forgotten"], 1, "{tv}");
    let sessions = capture["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{tv}");
    let s = &sessions[0];
    assert_eq!(s["number"], 1, "{tv}");
    let (packets, kept, handed_on) = (
        s["packets"].as_u64().unwrap(),
        s["kept"].as_u64().unwrap(),
        s["handed_on"].as_u64().unwrap(),
    );
    assert!(packets >= 125, "{tv}");
    assert!(kept <= 16, "{tv}");
    assert!(handed_on + kept >= 125, "{tv}");

    // The WAV answered holds at most the window; its headers say how much left memory.
    let api = serve.control();
    let mut c = TcpStream::connect(api.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /devices/tv/audio HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        api.addr.port(),
        api.token
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("airtwin-capture-window: 16"), "{head}");
    assert!(
        head.contains(&format!("airtwin-capture-handed-on: {handed_on}")),
        "{head}"
    );
    assert!(
        head.contains("airtwin-capture-sessions-forgotten: 1"),
        "{head}"
    );
    // 16 packets of 352 stereo 16-bit frames, and a 44-byte header.
    assert!(body.len() <= 44 + 16 * 352 * 4, "{} bytes", body.len());

    // Every sample of both sessions went to --out as it left memory.
    let (status, _) = serve.call("POST", "/shutdown", None);
    assert_eq!(status, 200);
    assert!(serve.wait(Duration::from_secs(15)).success());
    for n in 0..2 {
        let path = serve.dir.join(format!("out/tv-session{n}.wav"));
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(len >= 44 + 120 * 352 * 4, "{}: {len} bytes", path.display());
    }
}
