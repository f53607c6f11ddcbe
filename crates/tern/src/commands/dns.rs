//! `tern dns check` and `tern dns records`.

use anyhow::{Result, bail};

use crate::cli::DnsCommand;
use crate::commands::DataDir;

pub async fn run(_data: DataDir<'_>, cmd: DnsCommand) -> Result<()> {
    bail!("tern dns: not available in this build ({cmd:?})")
}
