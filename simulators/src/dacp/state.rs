//! DACP's view of the device's now-playing state, which lives in [`crate::now_playing`] so that
//! every protocol shares it.

pub use crate::now_playing::*;
