//! `${…}` substitution in external client commands.
//!
//! `${device.<name>.port}` (the device's main port), `${device.<name>.address}`,
//! `${device.<name>.ports.<service>}`, `${device.<name>.<identity fact>}` (the ready file's
//! `mac`, `public_key`…), `${peers}` (the folder `ci/install-peers` fills),
//! `${scenario_dir}`, `${out}` (the scenario's output folder), `${seed}`.

use std::collections::BTreeMap;

/// Values available to substitution.
#[derive(Debug, Default, Clone)]
pub struct Vars(pub BTreeMap<String, String>);

impl Vars {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Replaces every `${name}`; an unknown name is an error naming it and the known ones.
    pub fn apply(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed ${{ in {text:?}"));
            };
            let name = &after[..end];
            match self.0.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
                    return Err(format!(
                        "unknown variable ${{{name}}} (known: {})",
                        known.join(", ")
                    ));
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_reports_unknown_names() {
        let mut v = Vars::default();
        v.set("device.apx.port", "5000");
        assert_eq!(
            v.apply("--port=${device.apx.port}!").unwrap(),
            "--port=5000!"
        );
        let e = v.apply("${device.tv.port}").unwrap_err();
        assert!(
            e.contains("device.tv.port") && e.contains("device.apx.port"),
            "{e}"
        );
        assert!(v.apply("${oops").is_err());
    }
}
