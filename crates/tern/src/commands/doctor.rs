//! `tern doctor`: what a user's mail client would hit, checked from here.

use anyhow::{Result, bail};

use crate::cli::DoctorArgs;
use crate::commands::DataDir;

pub async fn run(_data: DataDir<'_>, args: DoctorArgs) -> Result<()> {
    bail!("tern doctor {}: not available in this build", args.email)
}
