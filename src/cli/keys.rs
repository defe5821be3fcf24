//! `keys`.

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair.
    Generate,
}

/// Runs a key command.
pub fn run(_command: KeysCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented")
}
