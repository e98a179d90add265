//! `sharded demo`: counters hashed across many Raft groups, three nodes in one process.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sharded::demo::{self, DemoArgs};

#[derive(Parser)]
#[command(name = "sharded", about = "Counters hashed across many Raft groups")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Three nodes in one process, each a member of every group on one shared log and one
    /// QUIC endpoint; concurrent increments over HTTP, then every counter read back from
    /// every node.
    Demo(DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    match command {
        Command::Demo(args) => {
            let (groups, clients) = (args.groups, args.clients);
            match demo::run(args).await {
                Ok(report) => {
                    let leaders: Vec<String> =
                        report.leaders.iter().map(|(g, n)| format!("{g}:{n}")).collect();
                    println!(
                        "{} increments of {} counters over {groups} groups on 3 nodes, {clients} HTTP clients: {:.0} increments/s, {} fdatasyncs on the three shared logs ({:.2} per increment)",
                        report.acknowledged + report.unknown,
                        report.keys,
                        (report.acknowledged + report.unknown) as f64 / report.elapsed.as_secs_f64(),
                        report.fsyncs,
                        report.fsyncs as f64 / (report.acknowledged + report.unknown).max(1) as f64
                    );
                    println!("leaders (group:node): {}", leaders.join(" "));
                    println!(
                        "demo ok: acknowledged={} unknown={} every counter read back from every node",
                        report.acknowledged, report.unknown
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sharded demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
