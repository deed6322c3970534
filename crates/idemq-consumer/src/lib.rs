//! The consumer runtime of idemq: the one loop every broker adapter runs on.
#![warn(missing_docs)]

pub mod tracker;
