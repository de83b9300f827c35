//! The `baleen` command: parses arguments and calls the server library.

use std::path::PathBuf;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "baleen",
    version,
    about = "Offline packages for mobile H5 pages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 key pair (NAME.private.json, NAME.public.json).
    Generate {
        /// Directory to write the key files into.
        #[arg(long, default_value = "baleen-data/keys")]
        dir: PathBuf,
        /// Base name of the key files.
        #[arg(long, default_value = "signing")]
        name: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::Generate { dir, name },
        } => {
            let key = server::keys::generate(&dir, &name)?;
            println!("key id:  {}", key.keyid);
            println!("private: {} (keep it secret)", key.private.display());
            println!("public:  {} (ship it in your apps)", key.public.display());
        }
    }
    Ok(())
}
