//! The names of the metrics the engine emits through the `metrics` facade.
//!
//! The engine never installs a recorder: install the exporter of your choice (Prometheus,
//! StatsD, ...) and call [`describe`] once to register descriptions and units.

/// Counter: claims by `outcome` (`acquired`, `duplicate`, `in_progress`, `conflict`), per `scope`.
pub const CLAIMS: &str = "idemq_claims_total";
/// Counter: handler runs by `result` (`ok`, `error`), per `scope`.
pub const HANDLED: &str = "idemq_handled_total";
/// Histogram: handler time in seconds, per `scope`.
pub const HANDLER_SECONDS: &str = "idemq_handler_seconds";
/// Counter: expired leases taken over, per `scope`.
pub const TAKEOVERS: &str = "idemq_lease_takeovers_total";
/// Counter: writes refused by the fencing token, per `scope` and `op`.
pub const FENCING_REFUSALS: &str = "idemq_fencing_refusals_total";
/// Counter: store errors, per `scope` and `op`.
pub const STORE_ERRORS: &str = "idemq_store_errors_total";
/// Counter: messages handled without protection because the store failed in fail-open mode.
pub const UNPROTECTED: &str = "idemq_unprotected_total";

/// Registers the descriptions and units of every idemq metric with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(CLAIMS, "Claims of idempotency keys, by outcome");
    describe_counter!(HANDLED, "Handler runs, by result");
    describe_histogram!(HANDLER_SECONDS, Unit::Seconds, "Handler time");
    describe_counter!(TAKEOVERS, "Expired leases taken over by another consumer");
    describe_counter!(
        FENCING_REFUSALS,
        "Writes of stale owners refused by the fencing token"
    );
    describe_counter!(STORE_ERRORS, "Store operations that failed");
    describe_counter!(
        UNPROTECTED,
        "Messages handled unprotected in fail-open mode"
    );
}
