//! Codecs: pure, sans-IO, bytes in and typed values out, never a panic.

pub mod dmap;
pub mod dns_sd;
pub mod framing;
pub mod hex;
pub mod interleaved;
pub mod message;
pub mod plist;
pub mod sdp;
pub mod transport;

pub use framing::{
    frame_request, parse_request, parse_response, salvage, Framed, FramingError, Limits,
};
pub use message::{reason_phrase, Headers, Protocol, Request, Response};
