//! `idemq`: the command line of idemq.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use idemq_cli::demo::transactional::TxFaults;
use idemq_cli::demo::{self, check, report, story::BusinessDb, DemoConfig, DemoError, Topic};
use idemq_cli::url::{BrokerUrl, DbUrl, StoreUrl};

const URL_FORMS: &str = "\
URLs:
  --store  where the idempotency records live
      memory://                  in this process only, forgotten on exit
      sqlite://FILE              one SQLite file, no server (the default: FILE.store.db
                                 next to the --db file)
      redis://HOST:PORT          one Redis node (rediss:// for TLS)
      redis-cluster://HOST:PORT[,HOST:PORT...]
                                 a Redis Cluster, through any of the nodes listed
      mysql://USER@HOST:PORT/DB  MySQL or MariaDB (mariadb:// too)
      postgres://USER@HOST/DB    PostgreSQL (postgresql:// too)
      same                       the business database (--db) itself, with the record
                                 written in the handler's own transaction: claim, stock
                                 update and CONSUMED mark commit together or not at all
      tiered+redis://HOST:PORT?durable=URL
                                 Redis in front of a durable SQL store: duplicates are
                                 answered from Redis, the durable store decides the rest.
                                 URL is everything after durable=: sqlite://FILE,
                                 mysql://..., postgres://... or same (the --db database, in
                                 the handler's transaction). tiered+redis-cluster:// too.
                                 e.g. tiered+redis://127.0.0.1:6379?durable=same
  --db     the business database the handler writes stock and stock-flow rows to
      sqlite://FILE              sqlite://demo.db is relative, sqlite:///tmp/demo.db absolute;
                                 default: idemq-demo.db in the system temp directory
      mysql://USER@HOST:PORT/DB  MySQL or MariaDB (mariadb:// too)
      postgres://USER@HOST:PORT/DB
                                 PostgreSQL (postgresql:// too)
  --broker where the orders travel
      memory://                  the in-process at-least-once broker of `demo run`
      amqp://HOST:PORT           RabbitMQ (amqps:// for TLS)
      kafka://HOST:PORT          Kafka
      rocketmq://HOST:PORT       RocketMQ
      nats://HOST:PORT           NATS JetStream
  Passwords in URLs are never printed.

Exit status: 0 when every order applied exactly once, 1 on violations, 2 when the command
could not run.";

/// Effectively-once message handling on at-least-once brokers.
#[derive(Debug, Parser)]
#[command(name = "idemq", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The reduce-stock story: orders delivered at least once, applied exactly once.
    #[command(after_long_help = URL_FORMS)]
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Produce, consume and check in one process, with no server at all: an in-memory
    /// broker that duplicates, delays and redelivers, consumers that fail and crash.
    #[command(after_long_help = URL_FORMS)]
    Run(Shared),
    /// Create the business schema if missing, place the orders and publish them (with
    /// duplicate sends) on a real broker; or, with --transactional on RocketMQ, create each
    /// order in the local transaction of its half message.
    #[command(after_long_help = URL_FORMS)]
    Produce {
        #[command(flatten)]
        shared: Shared,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Consume the topic from a real broker until it is drained and idle.
    #[command(after_long_help = URL_FORMS)]
    Consume {
        #[command(flatten)]
        shared: Shared,
        /// Exit once nothing was delivered for SECONDS (default: run forever).
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<f64>,
    },
    /// Check the business database: each order's flow row exactly once, none missing,
    /// stock consistent. Exits 1 on any violation.
    #[command(after_long_help = URL_FORMS)]
    Check(Shared),
}

/// The flags every demo command takes.
#[derive(Debug, Args)]
struct Shared {
    /// How many orders.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    orders: u32,
    /// Extra copies to publish, as a fraction of the orders (0.3: 30 copies per 100
    /// orders), shuffled in, half of them delayed.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.3)]
    duplicates: f64,
    /// Handler runs that fail: three in four return an error (retried with backoff), one
    /// in four crashes its consumer before the business transaction commits (with
    /// --store same, half of those after the handler's writes returned).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.2)]
    failures: f64,
    /// Acks the in-memory broker loses, so the message comes back after its visibility
    /// timeout.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.05)]
    lost_acks: f64,
    /// The idempotency store. Default: an SQLite file next to an SQLite --db file,
    /// NAME.store.db; `same` for a MySQL or PostgreSQL --db.
    #[arg(long, value_name = "URL")]
    store: Option<StoreUrl>,
    /// The business database. Default: sqlite://TMP/idemq-demo.db, TMP being the system's
    /// temporary directory.
    #[arg(long, value_name = "URL")]
    db: Option<DbUrl>,
    /// The broker.
    #[arg(long, value_name = "URL", default_value = "memory://")]
    broker: BrokerUrl,
    /// The topic: it names the queue, the idempotency scope and the run's rows, so a fresh
    /// name is a fresh run. Default: a fresh run-MILLIS for `run`, `orders` otherwise.
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// Concurrent consumer tasks.
    #[arg(long, value_name = "N", default_value_t = 4)]
    consumers: usize,
    /// The seed of the fault injection. Default: from the clock.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

/// The flags of `demo produce --transactional`.
#[derive(Debug, Args)]
struct TxArgs {
    /// Send each order as a RocketMQ transactional message: its local transaction creates
    /// the order in --db with the transaction-log row, and the message is delivered if and
    /// only if it commits.
    #[arg(long)]
    transactional: bool,
    /// Local transactions that decline (the order and its message roll back), as a
    /// fraction of the orders.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.1,
        requires = "transactional"
    )]
    declines: f64,
    /// Kill the process right after the Nth local commit, before the broker hears of it.
    #[arg(long, value_name = "N", requires = "transactional")]
    crash_after_commit: Option<u64>,
    /// Kill the process inside the Nth local transaction, before its commit.
    #[arg(long, value_name = "N", requires = "transactional")]
    crash_in_tx: Option<u64>,
    /// Stay up SECONDS after the last send, answering the broker's check-backs.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5.0,
        requires = "transactional"
    )]
    linger: f64,
    /// How long a half message without a log row is in doubt before a check-back rolls it
    /// back.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "transactional"
    )]
    grace: f64,
}

impl TxArgs {
    fn faults(&self) -> Result<TxFaults, DemoError> {
        let secs = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| DemoError::Usage(format!("{name} must be >= 0")))
        };
        Ok(TxFaults {
            declines: self.declines,
            crash_after_commit: self.crash_after_commit,
            crash_in_tx: self.crash_in_tx,
            linger: secs("--linger", self.linger)?,
            grace: secs("--grace", self.grace)?,
        })
    }
}

impl Shared {
    fn config(self, fresh_topic: bool) -> Result<DemoConfig, DemoError> {
        let db = self.db.unwrap_or_else(DbUrl::default_file);
        let topic = match self.topic {
            Some(name) => Topic::new(name)?,
            None if fresh_topic => Topic::fresh(),
            None => Topic::new("orders")?,
        };
        let mut cfg = DemoConfig::new(self.orders, db, topic);
        cfg.duplicates = self.duplicates;
        cfg.failures = self.failures;
        cfg.lost_acks = self.lost_acks;
        if let Some(store) = self.store {
            cfg.store = store;
        }
        cfg.broker = self.broker;
        cfg.consumers = self.consumers;
        cfg.seed = self
            .seed
            .unwrap_or_else(|| idemq_core::time::now_ms() as u64);
        cfg.progress = std::io::stderr().is_terminal();
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let Command::Demo { command } = cli.command;
    match runtime.block_on(run(command)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs a demo command; returns its violations (0 for produce and consume).
async fn run(command: DemoCommand) -> Result<u64, DemoError> {
    match command {
        DemoCommand::Run(shared) => {
            let cfg = shared.config(true)?;
            print!("{}", report::header("run", &cfg));
            let r = demo::run::run(&cfg).await?;
            print!("{}", report::run_table(&r));
            println!("{}", report::violations_line(r.violations()));
            Ok(r.violations())
        }
        DemoCommand::Produce { shared, tx } => {
            let cfg = shared.config(false)?;
            print!("{}", report::header("produce", &cfg));
            if tx.transactional {
                let tally = demo::transactional::produce_on(&cfg, &tx.faults()?).await?;
                println!("{}", report::produced_tx(&tally));
            } else {
                let plan = demo::produce::produce_on(&cfg).await?;
                println!("{}", report::produced(&plan));
            }
            Ok(0)
        }
        DemoCommand::Consume { shared, idle_exit } => {
            let cfg = shared.config(false)?;
            let idle = idle_exit
                .map(|s| {
                    Duration::try_from_secs_f64(s)
                        .map_err(|_| DemoError::Usage("--idle-exit must be >= 0".into()))
                })
                .transpose()?;
            print!("{}", report::header("consume", &cfg));
            let tally = demo::consume::consume_on(&cfg, idle).await?;
            print!("{}", report::consume_table(&tally));
            Ok(0)
        }
        DemoCommand::Check(shared) => {
            let cfg = shared.config(false)?;
            let db = BusinessDb::open_existing(&cfg.db).await?;
            let found = check::check(&db, &cfg.topic).await?;
            println!("idemq demo check: topic {} in {}", cfg.topic, cfg.db);
            print!("{}", report::check_summary(&found));
            println!("{}", report::violations_line(found.violations()));
            Ok(found.violations())
        }
    }
}
