//! A fake Spotify access point (AP) and its client, sans-IO.
//!
//! A client resolves AP addresses over HTTP ([`apresolve`]), opens TCP to one, and sends a
//! ClientHello with its Diffie-Hellman public value ([`handshake`], [`diffie_hellman`]); the AP
//! answers with its own, signed with its RSA key ([`identity`]); both derive Shannon keys from the
//! exact bytes of both packets, and every later packet is a Shannon frame ([`codec`]) carrying a
//! command ([`command`]): Login, APWelcome, Ping, Mercury ([`mercury`])… The AP's side of a
//! connection is [`session::ApConnection`]; the client's is [`client::ApClient`]. Both take bytes
//! and the time in and give bytes, events and timers out. See `docs/protocols/spotify-ap.md`.

pub mod apresolve;
pub mod client;
pub mod codec;
pub mod command;
pub mod diffie_hellman;
pub mod handshake;
pub mod identity;
pub mod mercury;
pub mod session;
pub mod transcript;
