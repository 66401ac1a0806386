//! Embeds the SQL migrations of both backends, so the binary carries its schema and
//! adding a migration file needs no code change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

struct Found {
    version: i64,
    name: String,
    up: PathBuf,
    down: PathBuf,
}

fn scan(dir: &Path) -> Result<Vec<Found>, String> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    for file in &names {
        let Some(stem) = file.strip_suffix(".up.sql") else {
            if !file.ends_with(".down.sql") {
                return Err(format!("{}: migration files end in .up.sql or .down.sql", file));
            }
            continue;
        };
        let (version, name) = stem.split_once('_').ok_or_else(|| format!("{file}: expected VERSION_NAME.up.sql"))?;
        let version: i64 = version.parse().map_err(|_| format!("{file}: version is not a number"))?;
        let down = format!("{stem}.down.sql");
        if !names.contains(&down) {
            return Err(format!("{file} has no {down}"));
        }
        found.push(Found { version, name: name.to_owned(), up: dir.join(file), down: dir.join(down) });
    }
    Ok(found)
}

fn main() -> Result<(), String> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?).join("../../migrations");
    let mut out = String::new();
    for (konst, backend) in [("SQLITE", "sqlite"), ("POSTGRES", "postgres")] {
        let dir = root.join(backend);
        println!("cargo::rerun-if-changed={}", dir.display());
        let found = scan(&dir)?;
        writeln!(out, "pub(crate) const {konst}: &[EmbeddedMigration] = &[").map_err(|e| e.to_string())?;
        for f in found {
            println!("cargo::rerun-if-changed={}", f.up.display());
            println!("cargo::rerun-if-changed={}", f.down.display());
            writeln!(
                out,
                "    EmbeddedMigration {{ version: {}, name: {:?}, up: include_str!({:?}), down: include_str!({:?}) }},",
                f.version, f.name, f.up, f.down
            )
            .map_err(|e| e.to_string())?;
        }
        writeln!(out, "];").map_err(|e| e.to_string())?;
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?).join("migrations.rs");
    std::fs::write(dest, out).map_err(|e| e.to_string())
}
