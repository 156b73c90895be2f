//! The RSA private keys scenarios name, read here so that the protocol cores never touch files.

use airtwin_simulators::raop::keys::{self, DeviceKey};
use anyhow::{Context as _, Result};

/// The key `source` names: a built-in one (`airport-express`, `builtin`, `other`), or else the
/// path of a PEM file holding a PKCS#1 or PKCS#8 private key.
pub fn load_private(source: &str) -> Result<DeviceKey> {
    if let Some(key) = keys::builtin_key(source) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read key file {source}"))?;
    Ok(keys::private_key_from_pem(&text, source)?)
}
