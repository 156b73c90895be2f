//! The AirPort Express: a RAOP (AirTunes v2) receiver.
