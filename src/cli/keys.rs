//! `keys`: the Ed25519 key pair that signs action request tokens.

use std::path::PathBuf;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::auth::generate_key_pair;
use crate::daemon::write_private_file;

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 signing key pair: signing-key.pem (private,
    /// mode 0600) and signing-key.pub.pem (public, for workers).
    Generate {
        /// Directory to write the two files to.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out_dir: PathBuf,
    },
}

/// Runs a key command.
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { out_dir } => {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("cannot create {}", out_dir.display()))?;
            let private_path = out_dir.join("signing-key.pem");
            let public_path = out_dir.join("signing-key.pub.pem");
            for path in [&private_path, &public_path] {
                anyhow::ensure!(
                    !path.exists(),
                    "{} exists already; move it away or choose another --out-dir",
                    path.display()
                );
            }

            let pair = generate_key_pair()?;
            write_private_file(&private_path, pair.private_pem.expose_secret())
                .with_context(|| format!("cannot write {}", private_path.display()))?;
            std::fs::write(&public_path, &pair.public_pem)
                .with_context(|| format!("cannot write {}", public_path.display()))?;

            println!("private key  {}", private_path.display());
            println!("public key   {}", public_path.display());
            println!("key id       {}", pair.key_id);
            println!(
                "Point the daemon at the private key with EVENT_HUB__AUTH__SIGNING_KEY_FILE={}",
                private_path.display()
            );
            Ok(())
        }
    }
}
