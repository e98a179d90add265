//! `status --cluster ADDRS`

use super::ClusterArgs;
use crate::Error;
use crate::api::StatusResponse;
use crate::outln;
use crate::output::OutputError;

/// Arguments of the `status` command.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Asks every listed node (not just the first that answers: the point is to compare
/// them) and prints one line per node, then the membership as the leader sees it. Fails
/// only if no node answers.
pub async fn run(args: Args) -> Result<(), Error> {
    let client = args.cluster.client();
    let mut answers = Vec::new();
    for node in client.nodes() {
        match client.status_of(node).await {
            Ok(status) => {
                outln!(
                    "node {:<3} {:<13} term {:<4} leader {:<4} commit {:<6} applied {:<6} ({node})",
                    status.id,
                    status.role,
                    status.term,
                    status.leader.map_or("-".to_string(), |l| l.to_string()),
                    status.commit,
                    status.applied,
                )?;
                if let Some(why) = &status.stale {
                    outln!("         (last published figures, not current: {why})")?;
                }
                answers.push(status);
            }
            Err(e) => outln!("no answer: {}", e.detail())?,
        }
    }
    let Some(view) = answers.iter().find(|s| s.role == "leader").or(answers.first()) else {
        return Err("no node answered".into());
    };
    print_members(view)?;
    Ok(())
}

/// Prints the members in `status`, one per line.
pub fn print_members(status: &StatusResponse) -> Result<(), OutputError> {
    outln!("members (as node {} sees them):", status.id)?;
    for m in &status.members {
        outln!(
            "  node {:<3} {:<8} raft {:<21} http {}",
            m.id,
            if m.voter { "voter" } else { "learner" },
            m.raft_addr,
            m.http_addr.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}
