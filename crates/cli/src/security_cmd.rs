//! `guard security`: addresses blocked after failed sign-ins.

use std::path::PathBuf;

use clap::Subcommand;
use guard_core::events::Actor;
use time::format_description::well_known::Rfc3339;

use crate::database::services;
use crate::{Failure, Format, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum SecurityAction {
    /// Addresses blocked after too many failed sign-ins.
    BlockedIps {
        #[command(subcommand)]
        action: BlockedIpsAction,
    },
    /// Lift the block of an address at once, on every replica. Recorded as an event.
    Unblock { ip: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BlockedIpsAction {
    /// The blocks in force, latest-ending first.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub(crate) async fn run(file: Option<PathBuf>, action: SecurityAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let (db, all) = services(&loaded.config).await?;
    let runtime = |e: &dyn std::fmt::Display| Failure::Runtime(e.to_string());
    let brute_force = all.auth.brute_force();
    let result = match action {
        SecurityAction::BlockedIps { action: BlockedIpsAction::List { format } } => {
            brute_force.blocks().await.map_err(|e| runtime(&e)).map(|blocks| {
                let time = |t: &time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
                match format {
                    Format::Json => {
                        let doc = guard_api::blocked_ips_json(&blocks);
                        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                    }
                    Format::Table => {
                        say!("{:<39}  {:>8}  {:<20}  UNTIL", "IP", "FAILURES", "SINCE");
                        for b in &blocks {
                            let (since, until) = (time(&b.blocked_at), time(&b.blocked_until));
                            let since = since.get(..19).unwrap_or(&since);
                            let until = until.get(..19).unwrap_or(&until);
                            say!("{:<39}  {:>8}  {:<20}  {}", b.ip, b.failures, since, until);
                        }
                        if blocks.is_empty() {
                            say!("(no address is blocked)");
                        }
                    }
                }
            })
        }
        SecurityAction::Unblock { ip } => match ip.trim().parse::<std::net::IpAddr>() {
            Err(_) => Err(Failure::Config(format!("{ip:?} is not an IP address"))),
            Ok(parsed) => {
                brute_force.unblock(Actor::Operator, &parsed.to_string()).await.map_err(|e| runtime(&e)).map(|lifted| {
                    if lifted {
                        say!("{parsed} is unblocked");
                    } else {
                        say!("{parsed} was not blocked");
                    }
                })
            }
        },
    };
    db.pool.close().await;
    result
}
