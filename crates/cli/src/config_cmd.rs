//! `guard config check`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use crate::{Failure, Format, load_config};

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Validate the configuration and print every effective setting (secrets
    /// redacted) with where it came from. Exits 2 when anything is invalid.
    Check {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the reference of every setting as a Markdown table (as in the README).
    Reference,
}

pub(crate) fn run(file: Option<PathBuf>, action: ConfigAction) -> Result<(), Failure> {
    let format = match action {
        ConfigAction::Check { format } => format,
        ConfigAction::Reference => {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), reference().as_bytes());
            return Ok(());
        }
    };
    let loaded = load_config(file, |l| l)?;
    match format {
        Format::Json => {
            let settings: Vec<_> = loaded
                .settings
                .iter()
                .map(|s| json!({ "key": s.key, "env": s.env, "value": s.value, "source": s.source.to_string() }))
                .collect();
            let doc =
                json!({ "valid": true, "file": loaded.file.map(|f| f.display().to_string()), "settings": settings });
            say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Table => {
            match &loaded.file {
                Some(f) => say!("configuration is valid (file: {})\n", f.display()),
                None => say!("configuration is valid (no configuration file)\n"),
            }
            let width_key = loaded.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
            let width_env = loaded.settings.iter().map(|s| s.env.len()).max().unwrap_or(0);
            let width_value =
                loaded.settings.iter().map(|s| s.value.as_deref().unwrap_or("(unset)").len()).max().unwrap_or(0);
            say!("{:width_key$}  {:width_env$}  {:width_value$}  SOURCE", "KEY", "ENV", "VALUE");
            for s in &loaded.settings {
                let value = s.value.as_deref().unwrap_or("(unset)");
                say!("{:width_key$}  {:width_env$}  {:width_value$}  {}", s.key, s.env, value, s.source);
            }
        }
    }
    Ok(())
}

/// The configuration reference, generated from the same table the loader uses.
pub(crate) fn reference() -> String {
    let mut out =
        String::from("| guard.toml key | Environment | Default | Accepts | Meaning |\n|---|---|---|---|---|\n");
    for s in guard_core::config::spec::SETTINGS {
        let env = if s.secret { format!("`{}` (or `{}_FILE`)", s.env, s.env) } else { format!("`{}`", s.env) };
        let default = s.default.map(|d| format!("`{d}`")).unwrap_or_else(|| "unset".into());
        out.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", s.key, env, default, s.expected, s.help));
    }
    out
}
