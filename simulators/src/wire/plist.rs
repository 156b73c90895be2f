//! Property lists from scenario values: YAML and JSON carry no plist types, so values written in
//! a scenario (`edit_plist`, `/info` overrides) are mapped onto the plist types Apple devices use.

/// A YAML/JSON value as a plist value: integers stay integers, other numbers become reals, null
/// becomes an empty string (plists have no null).
pub fn plist_from_json(v: &serde_json::Value) -> plist::Value {
    use serde_json::Value as J;
    match v {
        J::Null => plist::Value::String(String::new()),
        J::Bool(b) => plist::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => plist::Value::Integer(i.into()),
            (None, Some(u)) => plist::Value::Integer(u.into()),
            _ => plist::Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => plist::Value::String(s.clone()),
        J::Array(a) => plist::Value::Array(a.iter().map(plist_from_json).collect()),
        J::Object(m) => plist::Value::Dictionary(
            m.iter()
                .map(|(k, v)| (k.clone(), plist_from_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_stay_integers_and_null_becomes_empty_string() {
        assert_eq!(plist_from_json(&json!(7)), plist::Value::Integer(7.into()));
        assert_eq!(
            plist_from_json(&json!(u64::MAX)),
            plist::Value::Integer(u64::MAX.into())
        );
        assert_eq!(plist_from_json(&json!(1.5)), plist::Value::Real(1.5));
        assert_eq!(
            plist_from_json(&json!(null)),
            plist::Value::String(String::new())
        );
        let d = plist_from_json(&json!({"a": [true, "x"]}));
        let arr = d.as_dictionary().unwrap()["a"].as_array().unwrap().clone();
        assert_eq!(
            arr,
            vec![
                plist::Value::Boolean(true),
                plist::Value::String("x".into())
            ]
        );
    }
}
