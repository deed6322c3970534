//! The idemq command line, as a library: `idemq demo` and the URLs that choose its
//! store, business database and broker. The `idemq` binary is a thin clap front-end.
#![warn(missing_docs)]

pub mod demo;
pub mod url;

// The README's Rust examples run as doctests of this crate, so they keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
