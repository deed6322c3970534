//! Exactly-once payments on PostgreSQL: the same payment delivered many times, some of them
//! at once, debits the account once.
//!
//! ```text
//! cargo run -p idemq-postgres --example payment [postgres://postgres@127.0.0.1:5432/test]
//! ```

mod payment;

use idemq_core::{EngineConfig, Outcome, Scope};
use idemq_postgres::PgStore;
use payment::Payment;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = PgStore::connect(&url).await?;
    payment::setup(store.pool()).await?;
    let config = EngineConfig::new(Scope::new("billing/payments")?);

    let run = uuid::Uuid::new_v4().simple().to_string();
    let account = format!("acct-{}", &run[..8]);
    sqlx::query("INSERT INTO example_accounts (account, balance) VALUES ($1, 10000)")
        .bind(&account)
        .execute(store.pool())
        .await?;
    let payment = Payment {
        serial: format!("PAY-{}", &run[..12]),
        account: account.clone(),
        cents: 2500,
    };
    let msg = payment.to_message();

    // Ten deliveries of one message at once, as a redelivery storm would bring them.
    let deliveries = (0..10).map(|_| {
        let (store, config, msg) = (store.clone(), config.clone(), msg.clone());
        tokio::spawn(async move { payment::handle(&store, &config, &msg).await })
    });
    for d in futures::future::join_all(deliveries).await {
        match d?? {
            Outcome::Processed { result, .. } => println!("processed: {}", text(result)),
            Outcome::Duplicate { result } => println!("duplicate: {}", text(result)),
            other => println!("{}", other.name()),
        }
    }
    let balance: i64 =
        sqlx::query_scalar("SELECT balance FROM example_accounts WHERE account = $1")
            .bind(&account)
            .fetch_one(store.pool())
            .await?;
    println!("{account}: balance {balance} (10000 - 2500 once)");
    Ok(())
}

fn text(result: Option<bytes::Bytes>) -> String {
    result
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .unwrap_or_default()
}
