//! `keys`: the Ed25519 key pair that signs action request tokens, and the
//! public key set (JWKS) that workers verify them with.

use std::path::PathBuf;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::auth::generate_key_pair;
use crate::config::Settings;
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
    /// Print the public keys as a JWKS (JSON Web Key Set) for workers: the
    /// signing key's (auth.signing_key_file) and those of
    /// auth.public_key_files, such as the previous key during a rotation.
    Export {
        /// Write the JWKS to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs a key command.
pub fn run(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        KeysCommand::Export { out } => {
            let keys = crate::auth::public_keys(&settings.auth)?;
            let mut text = serde_json::to_string_pretty(&crate::auth::jwks(&keys))?;
            text.push('\n');
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {} key(s) to {}", keys.len(), path.display());
                    Ok(())
                }
                None => super::resources::write_stdout(&text),
            }
        }
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
