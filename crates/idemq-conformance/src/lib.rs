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
//!
//! A [`TransactionalStore`](idemq_core::store::TransactionalStore) also runs the rules of
//! [`tx`] with [`tx_conformance!`], given a [`tx::Business`] for its SQL dialect.
//!
//! A broker adapter runs the rules of [`adapter`] with [`adapter_conformance!`], the broker
//! counterpart of the store suite, given an [`adapter::Broker`] for its test setup.

pub mod adapter;
pub mod bench;
pub mod rules;
pub mod tx;
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
            batch_get_answers_like_single_gets,
            batch_complete_answers_like_single_completes,
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

/// Generates one `#[tokio::test]` per rule of [`tx`] for a transactional store.
///
/// `store` is a future giving a connected store; `business` a type implementing
/// [`tx::Business`] for it. With `server`, the type also implements [`tx::Server`] and the
/// rules about lost connections and closed ports run too.
///
/// ```ignore
/// idemq_conformance::tx_conformance! {
///     store: store(),
///     business: Payments,
///     server,
/// }
/// ```
#[macro_export]
macro_rules! tx_conformance {
    (store: $store:expr, business: $business:ty $(,)?) => {
        $crate::tx_conformance!(@tests $store, $business;
            first_run_commits_and_duplicates_get_the_stored_result,
            a_handler_error_rolls_back_the_effect_and_the_claim,
            killed_after_the_claim_before_the_handler_writes_leaves_nothing,
            killed_after_the_business_write_leaves_nothing,
            repeated_kills_leave_nothing,
            a_dropped_future_leaves_nothing,
            concurrent_duplicates_apply_once,
            an_oversized_result_is_refused_and_nothing_is_written,
            another_payload_under_a_paid_serial_is_a_conflict,
            hostile_keys_are_stored_as_data_and_hostile_names_are_refused,
            oversized_results_are_refused_not_truncated,
            the_sweeper_deletes_expired_rows_in_small_batches,
        );
    };
    (store: $store:expr, business: $business:ty, server $(,)?) => {
        $crate::tx_conformance!(store: $store, business: $business);
        $crate::tx_conformance!(@tests $store, $business;
            a_connection_lost_before_the_commit_leaves_nothing,
        );
        #[tokio::test]
        async fn a_closed_port_answers_unavailable_promptly() {
            $crate::tx::a_closed_port_answers_unavailable_promptly::<$business>().await;
        }
    };
    (@tests $store:expr, $business:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::tx::$name::<$business>($store.await).await;
            }
        )*
    };
}
