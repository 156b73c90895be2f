//! The apresolve answer: `GET /?type=accesspoint&type=dealer&type=spclient` returns a JSON object
//! with one list of `"host:port"` strings per requested type (`docs/protocols/spotify-ap.md`,
//! "apresolve"). librespot asks for all three in one request; librespot-python asks per type.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
