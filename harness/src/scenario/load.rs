//! Reading scenario files into [`Scenario`]s, with errors that say where: `file:line:column`,
//! the field path, and what was expected.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use airtwin_simulators::fault::Scope;

use super::model::{ClientKind, DeviceKind, Expectation, Scenario};

/// A scenario that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Field path, e.g. `devices[0].kind`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// A scenario and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub scenario: Scenario,
}

impl Loaded {
    /// The folder relative paths in the scenario are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Resolves a path written in the scenario.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir().join(path)
        }
    }
}

/// Reads and checks one scenario file.
pub fn load_file(file: &Path) -> Result<Loaded, ScenarioError> {
    let text = std::fs::read_to_string(file).map_err(|e| ScenarioError {
        file: file.to_path_buf(),
        line: 1,
        column: 1,
        path: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let scenario = parse_str(&text, file)?;
    Ok(Loaded {
        file: file.to_path_buf(),
        scenario,
    })
}

/// Parses scenario text. `file` is only used in error messages.
pub fn parse_str(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    // Enums are written as single-key maps (`raop: {…}`, `delay: 500`) or plain strings (`drop`);
    // serde_yaml 0.9 reads only `!tag` forms unless told with `singleton_map_recursive`.
    let parsed: Result<Scenario, serde_yaml::Error> =
        serde_yaml::with::singleton_map_recursive::deserialize(
            serde_path_to_error::Deserializer::new(de, &mut track),
        );
    let scenario = parsed.map_err(|inner| {
        let path = clean_path(&track.path().to_string());
        let (line, column) = match inner.location() {
            Some(l) => (l.line(), l.column()),
            None => locate(text, &path),
        };
        ScenarioError {
            file: file.to_path_buf(),
            line,
            column,
            path,
            message: explain(&inner.to_string()),
        }
    })?;
    check(&scenario).map_err(|(path, message)| {
        let (line, column) = locate(text, &path);
        ScenarioError {
            file: file.to_path_buf(),
            line,
            column,
            path,
            message,
        }
    })?;
    Ok(scenario)
}

/// serde_path_to_error writes `.` for the root and `?` for unknown positions.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.replace("?.", "").replace('?', "")
    }
}

/// Removes serde_yaml's own path prefix and ` at line L column C` suffix: both are already in
/// front of the message.
fn explain(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let msg = match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') => rest,
        _ => msg,
    };
    msg.to_string()
}

/// Checks what the types cannot: unique names, references to devices and clients, and values
/// in range. Returns the field path and the message.
fn check(s: &Scenario) -> Result<(), (String, String)> {
    if s.devices.is_empty() {
        return Err((
            "devices".into(),
            "a scenario needs at least one device".into(),
        ));
    }
    let mut devices = HashSet::new();
    for (i, d) in s.devices.iter().enumerate() {
        if !valid_name(&d.name) {
            return Err((
                format!("devices[{i}].name"),
                format!(
                    "{:?} is not a valid name (letters, digits, - and _)",
                    d.name
                ),
            ));
        }
        if !devices.insert(d.name.as_str()) {
            return Err((
                format!("devices[{i}].name"),
                format!("duplicate device name {:?}", d.name),
            ));
        }
        if let Some(mac) = &d.identity.mac {
            if crate::devices::parse_mac(mac).is_none() {
                return Err((
                    format!("devices[{i}].identity.mac"),
                    format!("{mac:?} is not a MAC address like 00:11:24:00:44:91"),
                ));
            }
        }
        if let Some(f) = &d.identity.features {
            if f.value().is_none() {
                return Err((
                    format!("devices[{i}].identity.features"),
                    format!("{:?} is not a number or 0xLOW,0xHIGH", f.text()),
                ));
            }
        }
        if d.max_sessions == Some(0) {
            return Err((
                format!("devices[{i}].max_sessions"),
                "must be at least 1".into(),
            ));
        }
    }
    let known_device = |name: &str, path: String| -> Result<(), (String, String)> {
        if devices.contains(name) {
            Ok(())
        } else {
            let mut names: Vec<_> = devices.iter().copied().collect();
            names.sort();
            Err((
                path,
                format!("no device named {name:?} (devices: {})", names.join(", ")),
            ))
        }
    };
    let mut clients = HashSet::new();
    for (i, c) in s.clients.iter().enumerate() {
        if !clients.insert(c.name.as_str()) {
            return Err((
                format!("clients[{i}].name"),
                format!("duplicate client name {:?}", c.name),
            ));
        }
        if c.timeout.is_nan() || c.timeout <= 0.0 {
            return Err((
                format!("clients[{i}].timeout"),
                "must be a positive number of seconds".into(),
            ));
        }
        match &c.run {
            ClientKind::Raop(r) => known_device(&r.to, format!("clients[{i}].run.raop.to"))?,
            ClientKind::Airplay(a) => {
                known_device(&a.to, format!("clients[{i}].run.airplay.to"))?;
                if a.mode > 3 {
                    return Err((
                        format!("clients[{i}].run.airplay.mode"),
                        format!("FairPlay modes are 0..3, not {}", a.mode),
                    ));
                }
            }
            ClientKind::Command(argv) if argv.is_empty() => {
                return Err((
                    format!("clients[{i}].run.command"),
                    "needs at least the program".into(),
                ))
            }
            ClientKind::Command(_) => {}
            ClientKind::Dacp(d) => {
                known_device(&d.to, format!("clients[{i}].run.dacp.to"))?;
                if let Err(e) = crate::clients::dacp::parse_steps(&d.steps) {
                    return Err((format!("clients[{i}].run.dacp.steps"), e));
                }
            }
            ClientKind::Pair(p) => {
                known_device(&p.device, format!("clients[{i}].run.pair.device"))?;
                if p.address.is_some() == p.command.is_some() {
                    return Err((
                        format!("clients[{i}].run.pair"),
                        "needs either address or command (the remote to pair with)".into(),
                    ));
                }
                if p.discover && !s.netns {
                    return Err((
                        format!("clients[{i}].run.pair.discover"),
                        "browsing mDNS multicasts: it needs `netns: true` (a private network namespace)".into(),
                    ));
                }
                if p.discover && p.address.is_some() {
                    return Err((
                        format!("clients[{i}].run.pair.discover"),
                        "discover finds the remote's address: drop `address`".into(),
                    ));
                }
                if !p.pin.bytes().all(|b| b.is_ascii_digit()) || p.pin.is_empty() {
                    return Err((
                        format!("clients[{i}].run.pair.pin"),
                        format!("{:?} is not a PIN of digits", p.pin),
                    ));
                }
                if let Some(re) = p.ready_from.as_ref().or(p.port_from.as_ref()) {
                    if let Err(err) = regex::Regex::new(re) {
                        return Err((
                            format!("clients[{i}].run.pair"),
                            format!("bad regex: {err}"),
                        ));
                    }
                }
                if let Some(re) = &p.port_from {
                    if let Err(err) = regex::Regex::new(re) {
                        return Err((
                            format!("clients[{i}].run.pair.port_from"),
                            format!("bad regex: {err}"),
                        ));
                    }
                }
            }
        }
    }
    // A fault may also name a `pair` client: it reaches the remote that client starts.
    let mut fault_devices: Vec<&str> = devices.iter().copied().collect();
    fault_devices.extend(
        s.clients
            .iter()
            .filter(|c| matches!(c.run, ClientKind::Pair(_)))
            .map(|c| c.name.as_str()),
    );
    let scope = Scope {
        devices: Some(&fault_devices),
        // The scenario's faults name the keys: each is loaded when the devices start.
        keys: None,
    };
    for (i, f) in s.faults.iter().enumerate() {
        f.validate(&scope)
            .map_err(|e| (format!("faults[{i}].{}", e.path), e.message))?;
    }
    for (i, e) in s.expect.iter().enumerate() {
        match e {
            Expectation::Exchanges(x) => {
                known_device(&x.device, format!("expect[{i}].exchanges.device"))?
            }
            Expectation::NoUnexpectedRequests { device, .. } => {
                known_device(device, format!("expect[{i}].no_unexpected_requests.device"))?
            }
            Expectation::Audio(a) => known_device(&a.device, format!("expect[{i}].audio.device"))?,
            Expectation::NoWarnings { device } => {
                known_device(device, format!("expect[{i}].no_warnings.device"))?
            }
            Expectation::Warnings {
                device, matches, ..
            } => {
                known_device(device, format!("expect[{i}].warnings.device"))?;
                if let Some(re) = matches {
                    if let Err(err) = regex::Regex::new(re) {
                        return Err((
                            format!("expect[{i}].warnings.matches"),
                            format!("bad regex: {err}"),
                        ));
                    }
                }
            }
            Expectation::State { device, .. } => {
                known_device(device, format!("expect[{i}].state.device"))?
            }
            Expectation::Client(c) => {
                if !clients.contains(c.name.as_str()) {
                    return Err((
                        format!("expect[{i}].client.name"),
                        format!("no client named {:?}", c.name),
                    ));
                }
                for (field, re) in [("output", &c.output), ("output_not", &c.output_not)] {
                    if let Some(re) = re {
                        if let Err(err) = regex::Regex::new(re) {
                            return Err((
                                format!("expect[{i}].client.{field}"),
                                format!("bad regex: {err}"),
                            ));
                        }
                    }
                }
            }
            Expectation::FaultsApplied(list) => {
                if let Some(bad) = list.iter().find(|n| **n >= s.faults.len()) {
                    return Err((
                        format!("expect[{i}].faults_applied"),
                        format!("fault {bad} does not exist ({} faults)", s.faults.len()),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Finds the line and column of a field path (`clients[1].run.raop.to`) in block-style YAML, for
/// errors found after parsing. Falls back to the deepest ancestor found, then to 1:1.
///
/// Hand-written: serde_yaml keeps no positions on parsed values, and a full YAML parser with
/// spans would be a second parser for a message.
pub fn locate(text: &str, path: &str) -> (usize, usize) {
    let segments = split_path(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut best = (1, 1);
    let mut start = 0usize; // first line of the current node's block
    let mut end = lines.len();
    let mut indent: isize = -1; // indentation of the parent's keys
    for seg in segments {
        let seg_is_index = matches!(seg, Seg::Index(_));
        let found = match seg {
            Seg::Key(key) => find_key(&lines, start, end, indent, &key),
            Seg::Index(n) => find_item(&lines, start, end, indent, n),
        };
        let Some((line, col)) = found else { break };
        best = (line + 1, col + 1);
        // The node's block: the lines after it indented more than its key, or for a list item
        // more than its dash (its keys sit at the dash's column + 2).
        start = line;
        indent = match seg_is_index {
            true => col as isize - 2,
            false => col as isize,
        };
        end = lines.len();
        for (j, l) in lines.iter().enumerate().skip(line + 1) {
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            let ind = (l.len() - l.trim_start().len()) as isize;
            // YAML lets a list sit at its key's own indentation (`key:\n- item`).
            if ind < indent
                || (ind == indent && (seg_is_index || !l.trim_start().starts_with("- ")))
            {
                end = j;
                break;
            }
        }
    }
    best
}

enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(close) = rest.find(']') {
                if let Ok(n) = rest[1..close].parse() {
                    out.push(Seg::Index(n));
                }
                rest = &rest[close + 1..];
                if !rest.starts_with('[') {
                    break;
                }
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn find_key(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: isize,
    key: &str,
) -> Option<(usize, usize)> {
    for (i, l) in lines.iter().enumerate().take(end).skip(start) {
        let trimmed = l.trim_start();
        let mut col = l.len() - trimmed.len();
        let mut t = trimmed;
        // `- key: v` starts a mapping inside a list item.
        while let Some(r) = t.strip_prefix("- ") {
            col += 2;
            t = r;
        }
        if (col as isize) <= parent && i != start {
            continue;
        }
        if t.strip_prefix(key).is_some_and(|r| r.starts_with(':')) {
            return Some((i, col));
        }
    }
    None
}

fn find_item(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: isize,
    n: usize,
) -> Option<(usize, usize)> {
    let mut count = 0;
    let mut item_indent: Option<usize> = None;
    for (i, l) in lines.iter().enumerate().take(end).skip(start + 1) {
        let trimmed = l.trim_start();
        let col = l.len() - trimmed.len();
        if !(trimmed.starts_with("- ") || trimmed == "-") || (col as isize) < parent {
            continue;
        }
        if *item_indent.get_or_insert(col) != col {
            continue;
        }
        if count == n {
            return Some((i, col + 2));
        }
        count += 1;
    }
    None
}

/// Every `.yaml`/`.yml` file under the given files and folders, sorted, folders walked
/// recursively.
pub fn collect_files(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut out)?;
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// The names of every device kind, for messages.
pub fn device_kinds() -> &'static [&'static str] {
    DeviceKind::NAMES
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "name: t\ndescription: d\nseed: 3\ndevices:\n  - kind: airport-express\n    name: apx\nclients:\n  - name: c\n    run:\n      raop:\n        to: apx\n        file: a.wav\n";

    fn err(text: &str) -> ScenarioError {
        parse_str(text, Path::new("s.yaml")).unwrap_err()
    }

    #[test]
    fn good_scenario_parses() {
        let s = parse_str(GOOD, Path::new("s.yaml")).unwrap();
        assert_eq!(s.seed, 3);
        assert_eq!(s.devices[0].kind, DeviceKind::AirportExpress);
    }

    #[test]
    fn mistyped_kind_lists_valid_names_with_position() {
        let e = err(&GOOD.replace("airport-express", "airport-expres"));
        assert_eq!((e.line, e.column), (5, 11), "{e}");
        assert_eq!(e.path, "devices[0].kind");
        assert!(e.message.contains("airport-express"), "{e}");
        assert!(
            e.to_string()
                .starts_with("s.yaml:5:11: devices[0].kind: unknown variant"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = err(&GOOD.replace("    name: apx\n", "    name: apx\n    colour: red\n"));
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn mistyped_fault_lists_the_actions() {
        let text = format!("{GOOD}faults:\n  - action:\n      sign_wiht: other\n");
        let e = err(&text);
        assert!(e.path.starts_with("faults[0].action"), "{e}");
        assert!(
            e.message.contains("sign_with") && e.message.contains("lose_packets"),
            "{e}"
        );
        assert_eq!(e.line, 15, "{e}");
    }

    #[test]
    fn fault_checks_name_the_field_path_and_line() {
        let e = err(&format!(
            "{GOOD}faults:\n  - action:\n      lose_packets: 5\n"
        ));
        assert_eq!(e.path, "faults[0].action.lose_packets", "{e}");
        assert_eq!(e.message, "must be between 0 and 1");
        assert_eq!(e.line, 15, "{e}");
        let e = err(&format!(
            "{GOOD}faults:\n  - action: drop\n  - action: drop\n    probability: 1.5\n"
        ));
        assert_eq!(e.path, "faults[1].probability", "{e}");
        assert_eq!(e.line, 16, "{e}");
        let e = err(&format!(
            "{GOOD}faults:\n  - when:\n      device: attic\n    action: drop\n"
        ));
        assert_eq!(e.path, "faults[0].when.device", "{e}");
        assert!(e.message.contains("apx"), "{e}");
    }

    #[test]
    fn unknown_device_reference_points_at_the_field() {
        let e = err(&GOOD.replace("to: apx", "to: nowhere"));
        assert_eq!(e.path, "clients[0].run.raop.to");
        assert_eq!((e.line, e.column), (11, 9), "{e}");
        assert!(e.message.contains("apx"), "{e}");
    }

    #[test]
    fn discovering_a_remote_needs_a_namespace() {
        let text = "name: t\ndescription: d\ndevices:\n  - kind: apple-tv\n    name: atv\nclients:\n  - name: p\n    run:\n      pair:\n        device: atv\n        pin: \"1234\"\n        discover: true\n        command: [x]\n";
        let e = err(text);
        assert_eq!(e.path, "clients[0].run.pair.discover", "{e}");
        assert!(e.message.contains("netns: true"), "{e}");
        assert_eq!(e.line, 12, "{e}");
        assert!(parse_str(
            &text.replace("devices:", "netns: true\ndevices:"),
            Path::new("s.yaml")
        )
        .is_ok());
    }

    #[test]
    fn locate_finds_nested_list_items() {
        let text = "a:\n  - x: 1\n  - x: 2\n    y:\n      z: 3\n";
        assert_eq!(locate(text, "a[1].y.z"), (5, 7));
        assert_eq!(locate(text, "a[0].x"), (2, 5));
        assert_eq!(locate(text, "missing"), (1, 1));
    }

    proptest! {
        #[test]
        fn arbitrary_yaml_never_panics(text in "[ -~\n]{0,300}") {
            let _ = parse_str(&text, Path::new("p.yaml"));
        }

        #[test]
        fn arbitrary_paths_never_panic(text in "[a-z: \n-]{0,120}", path in "[a-z\\[\\]0-9.]{0,30}") {
            let (l, c) = locate(&text, &path);
            prop_assert!(l >= 1 && c >= 1);
        }
    }
}
