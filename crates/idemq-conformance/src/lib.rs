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
//!
//! A transaction log of transactional messages ([`idemq_sql::TxLog`]) runs the rules of
//! [`tx_log`] with [`tx_log_conformance!`], given a migrated log on a table the suite names.

pub mod adapter;
pub mod bench;
pub mod rules;
pub mod tx;
pub mod tx_log;
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

/// Generates one `#[tokio::test]` per rule of [`tx_log`] for a transaction log.
///
/// `log` is a future giving a migrated log on the table named `table` (a `&str`, fresh for
/// each test, see [`tx_log::fresh_table`]). With `drop`, a future given the log (named as in
/// `|log|`) drops that table once the rule passed; the suite drops nothing else.
///
/// ```ignore
/// idemq_conformance::tx_log_conformance! {
///     log: |table| log_on(table),
///     drop: |log| drop_table(log),
/// }
/// ```
#[macro_export]
macro_rules! tx_log_conformance {
    (log: |$table:ident| $log:expr $(, drop: |$dropped:ident| $drop:expr)? $(,)?) => {
        $crate::tx_log_conformance!(@tests |$table| $log; ($(|$dropped| $drop)?);
            a_recorded_transaction_is_committed_with_it,
            a_rolled_back_transaction_leaves_no_row,
            a_second_record_of_one_id_is_refused,
            resolve_settles_an_absent_id_as_rolled_back_and_fences_a_late_record,
            resolve_after_a_commit_answers_committed,
            resolve_waits_for_the_open_transaction_that_holds_the_id,
            resolve_waits_for_the_open_transaction_that_holds_the_id_then_rolls_back,
            purge_deletes_old_rows_in_small_batches,
            the_purger_deletes_rows_past_retention_in_batches,
            awkward_ids_and_keys_round_trip,
        );
    };
    (@tests |$table:ident| $log:expr; $drop:tt; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let name = $crate::tx_log::fresh_table(stringify!($name));
                let log = {
                    let $table: &str = &name;
                    $log.await
                };
                $crate::tx_log::$name(::std::clone::Clone::clone(&log)).await;
                $crate::tx_log_conformance!(@drop log, $drop);
            }
        )*
    };
    (@drop $log:ident, ()) => {
        ::std::mem::drop($log);
    };
    (@drop $log:ident, (|$dropped:ident| $drop:expr)) => {
        let $dropped = $log;
        $drop.await;
    };
}
