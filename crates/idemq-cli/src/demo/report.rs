//! What the demo prints: the run's header, its table, the check's findings, the progress
//! bar. The last line of every run and check is `violations: N`.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::broker::memory::MemoryStats;
use super::check::CheckReport;
use super::consume::Tally;
use super::produce::Plan;
use super::transactional::TxTally;
use super::DemoConfig;
use crate::url::BrokerUrl;

/// How many offending orders a report lists before it says "and N more".
const LIST_AT_MOST: usize = 10;

/// Everything one `demo run` did and found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Orders placed.
    pub orders: u64,
    /// Extra copies published.
    pub copies: u64,
    /// What the broker saw.
    pub broker: MemoryStats,
    /// What the consumers did.
    pub tally: Tally,
    /// The verdict.
    pub check: CheckReport,
    /// Wall time from the first publish to the check.
    pub elapsed: Duration,
}

impl RunReport {
    /// The check's violations.
    pub fn violations(&self) -> u64 {
        self.check.violations()
    }
}

/// The lines naming what a command runs on.
pub fn header(command: &str, cfg: &DemoConfig) -> String {
    let t = &cfg.timing;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "idemq demo {command}: {} orders on topic {}",
        cfg.orders, cfg.topic
    );
    let _ = writeln!(s, "  store      {}", cfg.store);
    let _ = writeln!(s, "  db         {}", cfg.db);
    let _ = writeln!(s, "  broker     {}", cfg.broker);
    // Lost acks and the visibility timeout are the in-memory broker's; a real broker
    // brings its own.
    let memory = cfg.broker == BrokerUrl::Memory;
    let lost_acks = if memory {
        format!(", lost acks {}", cfg.lost_acks)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  faults     duplicates {}, failures {} (one in four a crash){lost_acks}, seed {}",
        cfg.duplicates, cfg.failures, cfg.seed
    );
    let visibility = if memory {
        format!(", visibility {} ms", t.visibility.as_millis())
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  consumers  {}, lease {} ms{visibility}, retries from {} ms",
        cfg.consumers,
        t.lease.as_millis(),
        t.retry.initial_interval.as_millis()
    );
    s
}

/// The table of a run, ending in the check's summary (not the violations line).
pub fn run_table(r: &RunReport) -> String {
    let t = &r.tally;
    let rows: [(&str, String); 12] = [
        (
            "messages published",
            format!(
                "{:>7}   {} orders + {} duplicate sends",
                r.broker.published, r.orders, r.copies
            ),
        ),
        ("deliveries", format!("{:>7}", r.broker.deliveries)),
        ("duplicates skipped", format!("{:>7}", t.duplicates_skipped)),
        ("in-progress deferrals", format!("{:>7}", t.deferrals)),
        ("retries (handler errors)", format!("{:>7}", t.retries)),
        ("crashes before commit", format!("{:>7}", t.crashes)),
        ("crashes after write", crashes_after_write(t)),
        ("lost acks", format!("{:>7}", r.broker.lost_acks)),
        (
            "visibility redeliveries",
            format!("{:>7}", r.broker.timeouts),
        ),
        ("effects applied", format!("{:>7}", t.effects_applied)),
        ("dead-lettered", format!("{:>7}", t.dead_lettered)),
        ("elapsed", format!("{:>7.2} s", r.elapsed.as_secs_f64())),
    ];
    let mut s = String::from("\n");
    for (name, value) in rows {
        let _ = writeln!(s, "  {name:<26}{value}");
    }
    s.push('\n');
    s.push_str(&check_summary(&r.check));
    s
}

/// The table of a `demo consume`: what this process's consumers did.
pub fn consume_table(t: &Tally) -> String {
    let count = |n: u64| format!("{n:>7}");
    let rows = [
        ("deliveries", count(t.deliveries)),
        ("duplicates skipped", count(t.duplicates_skipped)),
        ("in-progress deferrals", count(t.deferrals)),
        ("retries (handler errors)", count(t.retries)),
        ("crashes before commit", count(t.crashes)),
        ("crashes after write", crashes_after_write(t)),
        ("effects applied", count(t.effects_applied)),
        ("dead-lettered", count(t.dead_lettered)),
    ];
    let mut s = String::from("\n");
    for (name, value) in rows {
        let _ = writeln!(s, "  {name:<26}{value}");
    }
    s
}

/// Crashes between the handler's writes and the commit are only injected when that commit
/// also marks the key; with a store apart from the business database they would apply the
/// order twice, and the table says so instead of showing a bare 0.
fn crashes_after_write(t: &Tally) -> String {
    if t.in_tx {
        format!("{:>7}", t.crashes_after_write)
    } else {
        format!("{:>7}   not injected: the record is outside --db", "-")
    }
}

/// The check's findings: one summary line, then the offenders (not the violations line).
pub fn check_summary(c: &CheckReport) -> String {
    let mut s = String::new();
    let stock = if c.stock.is_empty() {
        "stock consistent".to_owned()
    } else {
        format!("{} SKUs with wrong stock", c.stock.len())
    };
    let _ = writeln!(
        s,
        "  check: {} orders, {} flow rows, {} missing, {} doubled, {} unknown, {stock}",
        c.orders,
        c.flow_rows,
        c.missing.len(),
        c.doubled.len(),
        c.unknown.len()
    );
    list(&mut s, "missing", c.missing.iter().map(String::as_str));
    let doubled: Vec<String> = c
        .doubled
        .iter()
        .map(|(id, n)| format!("{id} ×{n}"))
        .collect();
    list(&mut s, "doubled", doubled.iter().map(String::as_str));
    list(&mut s, "unknown", c.unknown.iter().map(String::as_str));
    for m in &c.stock {
        let _ = writeln!(
            s,
            "    stock {}: {} now, {} expected from orders, {} from flow rows",
            m.sku, m.actual, m.expected, m.by_flow
        );
    }
    s
}

fn list<'a>(s: &mut String, what: &str, items: impl ExactSizeIterator<Item = &'a str>) {
    let n = items.len();
    if n == 0 {
        return;
    }
    let shown: Vec<&str> = items.take(LIST_AT_MOST).collect();
    let more = n.saturating_sub(LIST_AT_MOST);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let _ = writeln!(s, "    {what}: {}{tail}", shown.join(", "));
}

/// The closing line of every run and check.
pub fn violations_line(n: u64) -> String {
    format!("violations: {n}")
}

/// What a produce printed.
pub fn produced(plan: &Plan) -> String {
    format!(
        "published {} messages: {} orders + {} duplicate sends",
        plan.messages.len(),
        plan.orders,
        plan.copies
    )
}

/// The line `demo produce --transactional` ends with.
pub fn produced_tx(t: &TxTally) -> String {
    format!(
        "transactional: {} orders committed ({} left to the check-back), {} declined and \
         rolled back, {} already sent; check-backs answered {} committed, {} rolled back, \
         {} unknown",
        t.committed,
        t.left_to_check,
        t.declined,
        t.already_sent,
        t.checks.0,
        t.checks.1,
        t.checks.2
    )
}

/// A progress bar on stderr for `total` settled messages, or a hidden one when `shown` is
/// false (stderr is not a terminal).
pub fn progress(total: u64, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("  {bar:40} {pos}/{len} settled  {elapsed_precise}")
            .expect("the template is valid"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut() {
        let c = CheckReport {
            orders: 20,
            flow_rows: 5,
            missing: (0..15).map(|i| format!("order-{i:06}")).collect(),
            ..CheckReport::default()
        };
        let s = check_summary(&c);
        assert!(s.contains("15 missing"), "{s}");
        assert!(s.contains("and 5 more"), "{s}");
        assert_eq!(violations_line(c.violations()), "violations: 15");
    }
}
