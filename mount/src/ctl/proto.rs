//! The control protocol's messages and their codec: one JSON object per
//! line, UTF-8, ended by `\n` (doc/FORMAT.md, "Control socket").
//!
//! A connection carries one request; the daemon answers with zero or more
//! `more` replies (a streaming request's items) and one final reply
//! (`ok` or `error`), then closes it. Versioning: `v` is the protocol
//! version. Adding a request or a field does not change it (readers
//! ignore fields they do not know, and an unknown request gets the error
//! `unknown_request`); changing what an existing field means does. A
//! daemon answers a request of a newer version than its own with
//! `unsupported_version`, naming its own in the reply's `v`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request or reply line, in bytes, newline included. A request
/// is a few dozen bytes; an `info` reply about 1 KiB.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// The request names this build knows.
pub const REQUEST_INFO: &str = "info";
pub const REQUEST_STATS: &str = "stats";
pub const REQUEST_DUMP: &str = "dump";
/// Every request name above (doc/FORMAT.md lists the same).
pub const REQUESTS: [&str; 3] = [REQUEST_INFO, REQUEST_STATS, REQUEST_DUMP];

/// Error codes of a reply (`error.code`). A client treats a code it does
/// not know like `failed`.
pub mod code {
    /// The line is not a request (not JSON, no `v` or `request`, too long).
    pub const BAD_REQUEST: &str = "bad_request";
    /// The request's `v` is newer than the daemon's.
    pub const UNSUPPORTED_VERSION: &str = "unsupported_version";
    /// The daemon does not know the request.
    pub const UNKNOWN_REQUEST: &str = "unknown_request";
    /// The daemon serves its limit of connections; try again.
    pub const BUSY: &str = "busy";
    /// The daemon is unmounting; the request was cut short.
    pub const STOPPING: &str = "stopping";
    /// The request was valid but failed; `message` says why.
    pub const FAILED: &str = "failed";
    /// Every code above (doc/FORMAT.md lists the same).
    pub const ALL: [&str; 6] = [BAD_REQUEST, UNSUPPORTED_VERSION, UNKNOWN_REQUEST, BUSY, STOPPING, FAILED];
}

/// One request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's protocol version.
    pub v: u32,
    /// What is asked: one of [`REQUESTS`].
    pub request: String,
    /// The request's arguments, if it takes any (`dump`: Dump arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

impl Request {
    pub fn new(request: &str) -> Request {
        Request { v: PROTOCOL_VERSION, request: request.to_string(), args: None }
    }
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The daemon's protocol version.
    pub v: u32,
    pub status: Status,
    /// The answer (`ok`) or one item of it (`more`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The final reply, with the answer in `body`.
    Ok,
    /// One item of a streamed answer; more replies follow.
    More,
    /// The final reply: the request failed, `error` says why.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyError {
    /// One of [`code`]'s constants.
    pub code: String,
    /// What went wrong, in words for a person.
    pub message: String,
}

impl Reply {
    /// A final answer.
    pub fn ok(body: Value) -> Reply {
        Reply { v: PROTOCOL_VERSION, status: Status::Ok, body: Some(body), error: None }
    }

    /// One item of a streamed answer.
    pub fn more(body: Value) -> Reply {
        Reply { v: PROTOCOL_VERSION, status: Status::More, body: Some(body), error: None }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Reply {
        let error = ReplyError { code: code.to_string(), message: message.into() };
        Reply { v: PROTOCOL_VERSION, status: Status::Error, body: None, error: Some(error) }
    }

    /// Whether more replies follow this one.
    pub fn is_final(&self) -> bool {
        self.status != Status::More
    }
}

/// Why a line could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    TooLong { bytes: usize },
    /// No newline at the end: the peer closed mid-line.
    Unterminated,
    Json(serde_json::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLong { bytes } => write!(f, "line of {bytes} bytes is over the {LINE_BYTES_MAX}-byte limit"),
            DecodeError::Unterminated => write!(f, "line does not end with a newline (the connection closed mid-line)"),
            DecodeError::Json(e) => write!(f, "not a message of the control protocol: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// `message` as one line: compact JSON (which never holds a raw newline)
/// and `\n`.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol messages serialize: string keys, finite numbers");
    line.push(b'\n');
    line
}

/// One line, newline included, as a message of type `T`.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, DecodeError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(DecodeError::TooLong { bytes: line.len() });
    }
    let body = line.strip_suffix(b"\n").ok_or(DecodeError::Unterminated)?;
    serde_json::from_slice(body).map_err(DecodeError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_as_one_line() {
        let line = encode(&Request::new(REQUEST_INFO));
        assert_eq!(line, b"{\"v\":1,\"request\":\"info\"}\n");
        assert_eq!(decode::<Request>(&line).unwrap(), Request::new(REQUEST_INFO));
        let with_args = Request { args: Some(serde_json::json!({"meta_only": true})), ..Request::new(REQUEST_DUMP) };
        assert_eq!(decode::<Request>(&encode(&with_args)).unwrap(), with_args);
    }

    #[test]
    fn replies_round_trip_and_only_more_is_not_final() {
        let body = serde_json::json!({"text": "two\nlines", "n": 3});
        for reply in [Reply::ok(body.clone()), Reply::more(body), Reply::error(code::BUSY, "later")] {
            let line = encode(&reply);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "a newline in a string is escaped");
            let back: Reply = decode(&line).unwrap();
            assert_eq!(back.is_final(), reply.status != Status::More);
            assert_eq!(back, reply);
        }
        let err = encode(&Reply::error(code::FAILED, "x"));
        assert!(!String::from_utf8(err).unwrap().contains("body"), "absent fields are left out");
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_refused() {
        let newer: Request = decode(b"{\"v\":2,\"request\":\"dump\",\"since\":5}\n").unwrap();
        assert_eq!((newer.v, newer.request.as_str()), (2, "dump"));
        assert!(matches!(decode::<Request>(b"{\"request\":\"info\"}\n"), Err(DecodeError::Json(_))));
        assert!(matches!(decode::<Request>(b"info\n"), Err(DecodeError::Json(_))));
    }

    #[test]
    fn bad_framing_is_refused() {
        assert!(matches!(decode::<Request>(b"{\"v\":1,\"request\":\"info\"}"), Err(DecodeError::Unterminated)));
        let long = vec![b' '; LINE_BYTES_MAX + 1];
        assert!(matches!(decode::<Request>(&long), Err(DecodeError::TooLong { .. })));
    }
}
