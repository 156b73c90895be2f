//! Companion messages (docs/protocols/companion.md, "Messages"): an OPACK dictionary with the
//! name `_i`, the type `_t` (1 event, 2 request, 3 response), the content `_c` and the exchange
//! id `_x`, which a response echoes. A failed request's response carries `_em` (the error text)
//! and `_ec` (a code) instead of content.

use super::opack::Value;

/// `_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Event,
    Request,
    Response,
}

impl MessageType {
    pub fn code(self) -> i64 {
        match self {
            MessageType::Event => 1,
            MessageType::Request => 2,
            MessageType::Response => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(MessageType::Event),
            2 => Some(MessageType::Request),
            3 => Some(MessageType::Response),
            _ => None,
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `_i`; responses have none.
    pub name: Option<String>,
    pub kind: MessageType,
    /// `_c`; `Null` when absent.
    pub content: Value,
    /// `_x`.
    pub xid: Option<i64>,
    /// `_em` of a failed request's response.
    pub error: Option<String>,
}

/// Why a dictionary is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("OPACK payload is not a dictionary")]
    NotDict,
    #[error("message without a valid `_t` (1, 2 or 3)")]
    Type,
}

impl Message {
    pub fn request(name: &str, content: Value, xid: i64) -> Self {
        Message {
            name: Some(name.into()),
            kind: MessageType::Request,
            content,
            xid: Some(xid),
            error: None,
        }
    }

    pub fn event(name: &str, content: Value, xid: i64) -> Self {
        Message {
            name: Some(name.into()),
            kind: MessageType::Event,
            content,
            xid: Some(xid),
            error: None,
        }
    }

    pub fn response(xid: Option<i64>, content: Value) -> Self {
        Message {
            name: None,
            kind: MessageType::Response,
            content,
            xid,
            error: None,
        }
    }

    pub fn error_response(xid: Option<i64>, code: i64, text: &str) -> Self {
        Message {
            name: None,
            kind: MessageType::Response,
            content: Value::Int(code),
            xid,
            error: Some(text.into()),
        }
    }

    pub fn from_value(v: &Value) -> Result<Self, MessageError> {
        if !matches!(v, Value::Dict(_)) {
            return Err(MessageError::NotDict);
        }
        let kind = v
            .get("_t")
            .and_then(Value::as_int)
            .and_then(MessageType::from_code)
            .ok_or(MessageError::Type)?;
        Ok(Message {
            name: v.get("_i").and_then(Value::as_str).map(str::to_string),
            kind,
            content: v
                .get(if v.get("_em").is_some() { "_ec" } else { "_c" })
                .cloned()
                .unwrap_or(Value::Null),
            xid: v.get("_x").and_then(Value::as_int),
            error: v.get("_em").map(|e| match e {
                Value::Str(s) => s.clone(),
                other => other.to_string(),
            }),
        })
    }

    pub fn to_value(&self) -> Value {
        let mut pairs = Vec::new();
        if let Some(n) = &self.name {
            pairs.push(("_i", Value::str(n.clone())));
        }
        pairs.push(("_t", Value::Int(self.kind.code())));
        match &self.error {
            Some(text) => {
                pairs.push(("_em", Value::str(text.clone())));
                pairs.push(("_ec", self.content.clone()));
            }
            None => pairs.push(("_c", self.content.clone())),
        }
        if let Some(x) = self.xid {
            pairs.push(("_x", Value::Int(x)));
        }
        Value::dict(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::companion::opack;

    #[test]
    fn messages_survive_opack_and_errors_carry_em() {
        let req = Message::request(
            "_launchApp",
            Value::dict([("_bundleID", Value::str("com.netflix.Netflix"))]),
            41,
        );
        let back = Message::from_value(&opack::decode(&opack::encode(&req.to_value())).unwrap());
        assert_eq!(back.unwrap(), req);
        let err = Message::error_response(Some(41), 58822, "No request handler");
        let v = err.to_value();
        assert_eq!(
            v.get("_em").and_then(Value::as_str),
            Some("No request handler")
        );
        assert!(v.get("_c").is_none());
        assert_eq!(Message::from_value(&v).unwrap(), err);
        assert_eq!(
            Message::from_value(&Value::Int(3)),
            Err(MessageError::NotDict)
        );
        assert_eq!(
            Message::from_value(&Value::dict([("_t", Value::Int(9))])),
            Err(MessageError::Type)
        );
    }
}
