//! A payment handler made exactly-once by its payment serial number: the payment row, the
//! account debit and the idempotency record commit in one PostgreSQL transaction.

use idemq_core::{EngineConfig, EngineError, Envelope, Fingerprint, IdempotencyKey, Outcome};
use idemq_postgres::PgStore;
use sqlx::{PgConnection, PgPool};

/// A payment order, as carried in a message: `serial,account,cents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The payment's serial number: its idempotency key.
    pub serial: String,
    /// The account to debit.
    pub account: String,
    /// The amount, in cents.
    pub cents: i64,
}

impl Payment {
    /// Reads a payment from a message payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, ',');
        Some(Self {
            serial: parts.next()?.to_owned(),
            account: parts.next()?.to_owned(),
            cents: parts.next()?.parse().ok()?,
        })
    }

    /// The message carrying this payment.
    pub fn to_message(&self) -> Envelope {
        Envelope::new(format!("{},{},{}", self.serial, self.account, self.cents).into_bytes())
    }
}

/// Why a payment was not made; the whole transaction is rolled back.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The message is not a payment.
    #[error("not a payment message")]
    Malformed,
    /// No such account.
    #[error("unknown account {0}")]
    UnknownAccount(String),
    /// The database refused a write.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates the example's tables if they do not exist.
pub async fn setup(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL: serialise them.
    sqlx::query("SELECT pg_advisory_xact_lock(4243)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS example_accounts (
             account TEXT PRIMARY KEY, balance BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS example_payments (
             serial TEXT PRIMARY KEY, account TEXT NOT NULL, cents BIGINT NOT NULL,
             paid_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Handles one payment message: at most one payment row and one debit per serial, however
/// often and however concurrently the message is delivered.
pub async fn handle(
    store: &PgStore,
    config: &EngineConfig,
    msg: &Envelope,
) -> Result<Outcome<PaymentError>, EngineError> {
    let Some(payment) = Payment::parse(&msg.payload) else {
        return Ok(Outcome::Failed {
            error: PaymentError::Malformed,
            attempt: 1,
        });
    };
    let key = IdempotencyKey::new(&payment.serial)?;
    // The fingerprint tells a replay from a different payment reusing a serial.
    let fingerprint = Some(Fingerprint::of(&msg.payload));
    store
        .run_in_tx(config, key, fingerprint, move |tx| {
            Box::pin(async move { pay(tx, &payment).await })
        })
        .await
}

/// The business writes, on the dedup transaction.
async fn pay(tx: &mut PgConnection, p: &Payment) -> Result<String, PaymentError> {
    sqlx::query("INSERT INTO example_payments (serial, account, cents) VALUES ($1, $2, $3)")
        .bind(&p.serial)
        .bind(&p.account)
        .bind(p.cents)
        .execute(&mut *tx)
        .await?;
    let debited =
        sqlx::query("UPDATE example_accounts SET balance = balance - $2 WHERE account = $1")
            .bind(&p.account)
            .bind(p.cents)
            .execute(&mut *tx)
            .await?;
    if debited.rows_affected() != 1 {
        return Err(PaymentError::UnknownAccount(p.account.clone()));
    }
    Ok(format!(
        "{} debited {} from {}",
        p.serial, p.cents, p.account
    ))
}
