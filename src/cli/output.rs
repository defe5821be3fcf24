//! Output formats shared by the list and show commands.

use clap::ValueEnum;

/// How list and show commands print their result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts: an array for list, an object for show.
    Json,
}
