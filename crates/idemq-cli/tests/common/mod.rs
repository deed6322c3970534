//! The demo across processes, on any real broker: one `demo produce`, consumer processes
//! (one of them killed with SIGKILL mid-way), then `demo check`.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use idemq_cli::demo::story::BusinessDb;
use idemq_cli::url::DbUrl;

/// Orders per scenario.
pub const ORDERS: i64 = 300;

/// A broker the demo runs on.
pub struct Demo {
    /// The `--broker` URL.
    pub broker: &'static str,
    /// The consumers' `--idle-exit` in seconds: long enough for the broker to give back
    /// what a killed process held.
    pub idle_exit: &'static str,
    /// Whether a new consumer process replaces the killed one, and how long after the kill,
    /// rather than the survivor taking over alone.
    pub replace_killed: Option<Duration>,
}

impl Demo {
    /// The common arguments of `command`.
    pub fn args<'a>(&'a self, command: &'a str, db: &'a str, topic: &'a str) -> Vec<&'a str> {
        vec![
            "demo",
            command,
            "--broker",
            self.broker,
            "--db",
            db,
            "--topic",
            topic,
            "--orders",
            "300",
            "--duplicates",
            "0.3",
            "--failures",
            "0.2",
        ]
    }

    /// A `demo consume` process with the record in the business transaction.
    pub fn consume(&self, db: &str, topic: &str, seed: &str) -> Child {
        let mut a = self.args("consume", db, topic);
        a.extend([
            "--idle-exit",
            self.idle_exit,
            "--consumers",
            "4",
            "--seed",
            seed,
            "--store",
            "same",
        ]);
        Command::new(env!("CARGO_BIN_EXE_idemq"))
            .args(&a)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the idemq binary runs")
    }

    /// Produces the orders; fails when the broker is not running.
    pub fn produce(&self, db: &str, topic: &str) {
        let produced = idemq(&self.args("produce", db, topic));
        assert!(
            produced.status.success(),
            "produce failed (is {} up?):\n{}",
            self.broker,
            text(&produced)
        );
    }

    /// `demo check`'s report; fails unless the check passed with every order applied.
    pub fn check(&self, db: &str, topic: &str) -> String {
        let checked = idemq(&self.args("check", db, topic));
        let report = text(&checked);
        assert!(checked.status.success(), "check failed:\n{report}");
        assert!(report.contains("violations: 0"), "{report}");
        assert!(report.contains("300 orders, 300 flow rows"), "{report}");
        report
    }
}

/// `args` with `flag`'s value replaced.
pub fn set<'a>(mut args: Vec<&'a str>, flag: &str, value: &'a str) -> Vec<&'a str> {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .expect("the flag is there");
    args[at + 1] = value;
    args
}

/// Runs the idemq binary.
pub fn idemq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idemq"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the idemq binary runs")
}

/// Stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh SQLite business database in `dir`, and a topic no other run used.
pub fn fresh(dir: &tempfile::TempDir, prefix: &str) -> (String, String) {
    let db = format!("sqlite://{}", dir.path().join("shop.db").display());
    (db, format!("{prefix}-{}", idemq_core::time::now_ms()))
}

/// Two consumer processes that both run to the end apply each order once.
pub fn two_consumer_processes_apply_each_order_once(demo: &Demo) {
    let dir = tempfile::tempdir().unwrap();
    let (db, topic) = fresh(&dir, "two");
    demo.produce(&db, &topic);
    let (a, b) = (
        demo.consume(&db, &topic, "21"),
        demo.consume(&db, &topic, "22"),
    );
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a consumer failed:\n{}", text(&out));
    }
    demo.check(&db, &topic);
}

/// Two consumer processes, one killed with SIGKILL once some orders are applied and before
/// all are, with handlers and business transactions in flight: the survivor applies the
/// rest and each order applies once.
///
/// The consumers keep the record in the business transaction (`--store same`): with a
/// separate store, a SIGKILL between the business commit and the store's completion would
/// leave the order applied with its claim unfinished, and the redelivery would apply it
/// again.
pub async fn two_consumer_processes_one_killed_apply_each_order_once(demo: &Demo) {
    let dir = tempfile::tempdir().unwrap();
    let (db, topic) = fresh(&dir, "kill");
    demo.produce(&db, &topic);

    let mut doomed = demo.consume(&db, &topic, "11");
    let survivor = demo.consume(&db, &topic, "12");

    let business = BusinessDb::open_existing(&db.parse::<DbUrl>().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let applied_at_kill = loop {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM demo_stock_flow WHERE topic = ?")
                .bind(&topic)
                .fetch_one(business.pool())
                .await
                .unwrap_or(0);
        if applied >= ORDERS / 5 {
            break applied;
        }
        assert!(
            Instant::now() < deadline,
            "consumers applied only {applied} orders in 60 s"
        );
        // Polling a database another process writes: there is no event to await.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        doomed.try_wait().unwrap().is_none(),
        "the first consumer must still be running when it is killed"
    );
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert!(applied_at_kill < ORDERS, "the kill must happen mid-way");

    let replacement = match demo.replace_killed {
        Some(after) => {
            // The broker drops the dead member only after its session timeout, which no
            // client observes: there is no event to await.
            tokio::time::sleep(after).await;
            Some(demo.consume(&db, &topic, "13"))
        }
        None => None,
    };
    for (name, consumer) in [("surviving", Some(survivor)), ("replacement", replacement)] {
        let Some(consumer) = consumer else { continue };
        let done = consumer.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "the {name} consumer failed:\n{}",
            text(&done)
        );
    }
    demo.check(&db, &topic);
}
