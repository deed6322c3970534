//! The store conformance suite: the rules of the idempotency record, as tests every store runs.
//!
//! A store crate runs the whole suite with one macro call in an integration test:
//!
//! ```ignore
//! idemq_conformance::store_conformance! {
//!     store: async { MyStore::connect("...").await.unwrap() },
//!     unreachable: async { MyStore::connect_lazy("...closed port...").unwrap() },
//! }
//! ```
//!
//! Every test works in a fresh scope, so the suite can share one server with other runs.

pub mod rules;
mod unreachable;

pub use unreachable::Unreachable;

/// Generates one `#[tokio::test]` per rule of [`rules`] for a store.
///
/// `store` is a future giving a connected store; `unreachable` is a future giving the same
/// kind of store pointed at an address where nothing listens.
#[macro_export]
macro_rules! store_conformance {
    (store: $store:expr, unreachable: $bad:expr $(,)?) => {
        $crate::store_conformance!(@tests $store;
            first_delivery_runs_and_records_the_result,
            duplicate_after_completion_skips_the_handler,
            duplicate_in_flight_is_deferred_not_run,
            handler_error_releases_the_claim_for_a_retry,
            expired_lease_is_taken_over_and_the_stale_owner_fenced,
            heartbeat_keeps_a_long_handler_lease,
            engine_reports_lease_lost_to_a_stale_owner,
            other_payload_under_a_used_key_conflicts,
            concurrent_claims_acquire_each_key_once,
            batch_claim_answers_like_single_claims,
            records_expire_after_their_retention,
            awkward_keys_round_trip,
            large_results_round_trip,
            purge_and_stats_see_one_scope,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unreachable_store_fails_closed_unless_opted_open() {
            let bad = ::std::sync::Arc::new($bad.await);
            $crate::rules::unreachable_store_fails_closed_unless_opted_open(bad).await;
        }
    };
    (@tests $store:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = ::std::sync::Arc::new($store.await);
                $crate::rules::$name(store).await;
            }
        )*
    };
}
