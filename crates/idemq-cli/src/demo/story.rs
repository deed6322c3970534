//! The story: orders, the faults injected into the handler, and its errors.
//!
//! The handler's effect is one transaction on the business database (see [`super::db`]):
//! decrement the SKU's stock and insert a stock-flow row for the order.

use bytes::Bytes;
use idemq_core::Message;
use serde::{Deserialize, Serialize};

/// The business database, kept under its old path.
pub use super::db::BusinessDb;

/// How many SKUs the orders spread over.
pub const SKUS: u32 = 8;
/// The stock each SKU starts with.
pub const INITIAL_STOCK: i64 = 1_000_000;

/// One order: reduce `sku` by `qty`. Its id is the business key of its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id, e.g. `order-000042`.
    pub order_id: String,
    /// The SKU whose stock the order reduces.
    pub sku: String,
    /// How many units.
    pub qty: i64,
}

impl Order {
    /// The `i`th order of every run: the same index always gives the same order.
    pub fn nth(i: u32) -> Self {
        Self {
            order_id: format!("order-{i:06}"),
            sku: format!("sku-{}", i % SKUS),
            qty: 1 + i64::from(i.wrapping_mul(7) % 5),
        }
    }

    /// The message payload: the order as JSON.
    pub fn encode(&self) -> Bytes {
        serde_json::to_vec(self)
            .expect("an order always serialises")
            .into()
    }

    /// Reads an order back from a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// The first `n` orders.
pub fn orders(n: u32) -> Vec<Order> {
    (0..n).map(Order::nth).collect()
}

/// The business key of a message: its order id. A producer retry that republishes an
/// order under a new message id still carries the same key.
pub fn order_key<M: Message>(msg: &M) -> Option<String> {
    Order::decode(msg.payload()).ok().map(|o| o.order_id)
}

/// What the fault injection asks of one handler run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Run normally and commit.
    None,
    /// Fail with an error after writing, so the transaction rolls back.
    Error,
    /// Die in the handler after writing, before the commit; the database discards the
    /// transaction.
    Crash,
    /// Finish the handler's writes and its result, and die as it hands the result back,
    /// before the store marks the key and commits: the point where a handler with its own
    /// transaction would have committed the effect with the key not yet completed. Only
    /// injected with the record in the business transaction (`--store same`), where the one
    /// lost commit takes the effect and the claim with it.
    CrashAfterWrite,
}

/// Why the handler did not apply an order.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an order.
    #[error("undecodable order: {0}")]
    Decode(#[from] serde_json::Error),
    /// The order names a SKU the topic has no stock row for.
    #[error("no stock row for {0}")]
    UnknownSku(String),
    /// An injected failure: a transient error of a dependency.
    #[error("injected failure: stock service timed out")]
    Injected,
    /// An injected crash before the commit; the consumer treats it as its own death.
    #[error("injected crash before commit")]
    Crashed,
    /// The business database failed.
    #[error("business database: {0}")]
    Db(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use idemq_core::Envelope;

    #[test]
    fn orders_are_stable_and_keyed_by_id() {
        assert_eq!(Order::nth(42), Order::nth(42));
        let o = Order::nth(9);
        assert_eq!(o.order_id, "order-000009");
        assert_eq!(Order::decode(&o.encode()).unwrap(), o);
        let msg = Envelope::new(o.encode()).with_message_id("retry-2");
        assert_eq!(order_key(&msg).as_deref(), Some("order-000009"));
        assert_eq!(order_key(&Envelope::new("not json")), None);
    }
}
