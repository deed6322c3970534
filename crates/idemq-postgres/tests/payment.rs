//! The payment example under redelivery storms: one payment row and one debit per serial.

#[path = "../examples/payment/payment.rs"]
#[allow(dead_code)]
mod payment;

use idemq_core::{EngineConfig, Outcome, Scope};
use idemq_postgres::PgStore;
use payment::{Payment, PaymentError};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Bank {
    store: PgStore,
    config: EngineConfig,
    run: String,
}

async fn bank() -> Bank {
    let store = PgStore::connect(URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 (db test) is required: {e}"));
    payment::setup(store.pool()).await.unwrap();
    Bank {
        store,
        config: EngineConfig::new(Scope::new("billing/payments").unwrap()),
        run: uuid::Uuid::new_v4().simple().to_string(),
    }
}

impl Bank {
    async fn open(&self, name: &str, balance: i64) -> String {
        let account = format!("{name}-{}", self.run);
        sqlx::query("INSERT INTO example_accounts (account, balance) VALUES ($1, $2)")
            .bind(&account)
            .bind(balance)
            .execute(self.store.pool())
            .await
            .unwrap();
        account
    }

    fn payment(&self, n: u32, account: &str, cents: i64) -> Payment {
        Payment {
            serial: format!("PAY-{}-{n}", self.run),
            account: account.to_owned(),
            cents,
        }
    }

    async fn balance(&self, account: &str) -> i64 {
        sqlx::query_scalar("SELECT balance FROM example_accounts WHERE account = $1")
            .bind(account)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    async fn rows(&self, serial: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM example_payments WHERE serial = $1")
            .bind(serial)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_fired_from_many_tasks_and_redelivered_is_made_once() {
    let bank = std::sync::Arc::new(bank().await);
    let account = bank.open("alice", 10_000).await;
    let p = bank.payment(1, &account, 2_500);
    let msg = p.to_message();
    let storm = (0..48).map(|_| {
        let (bank, msg) = (bank.clone(), msg.clone());
        tokio::spawn(async move { payment::handle(&bank.store, &bank.config, &msg).await })
    });
    let mut processed = 0;
    let receipt = format!("{} debited 2500 from {account}", p.serial);
    for out in futures::future::join_all(storm).await {
        match out.unwrap().unwrap() {
            Outcome::Processed { result, .. } => {
                processed += 1;
                assert_eq!(result.as_deref(), Some(receipt.as_bytes()));
            }
            Outcome::Duplicate { result } => {
                assert_eq!(result.as_deref(), Some(receipt.as_bytes()))
            }
            other => panic!("{}", other.name()),
        }
    }
    // Late redeliveries, one after another.
    for _ in 0..5 {
        let out = payment::handle(&bank.store, &bank.config, &msg)
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Duplicate { .. }), "{}", out.name());
    }
    assert_eq!(processed, 1);
    assert_eq!(bank.rows(&p.serial).await, 1);
    assert_eq!(bank.balance(&account).await, 7_500);
}

#[tokio::test]
async fn a_failed_payment_leaves_nothing_and_a_reused_serial_conflicts() {
    let bank = bank().await;
    let account = bank.open("bob", 1_000).await;
    // Unknown account: the payment row written before the failed debit is rolled back.
    let ghost = bank.payment(2, "no-such-account", 100);
    let out = payment::handle(&bank.store, &bank.config, &ghost.to_message())
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::Failed {
                error: PaymentError::UnknownAccount(_),
                ..
            }
        ),
        "{}",
        out.name()
    );
    assert_eq!(bank.rows(&ghost.serial).await, 0);

    let p = bank.payment(3, &account, 400);
    let out = payment::handle(&bank.store, &bank.config, &p.to_message())
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Processed { .. }), "{}", out.name());
    // The same serial with another amount is a different payment: refused, not applied.
    let forged = Payment {
        cents: 900,
        ..p.clone()
    };
    let out = payment::handle(&bank.store, &bank.config, &forged.to_message())
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Conflict { .. }), "{}", out.name());
    assert_eq!(bank.rows(&p.serial).await, 1);
    assert_eq!(bank.balance(&account).await, 600);
}
