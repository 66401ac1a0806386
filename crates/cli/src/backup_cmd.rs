//! `guard backup create | list | verify | prune` and `guard restore`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use guard_core::Config;
use guard_core::backup::{ArchiveReader, ArchiveWriter, EXTENSION, Manifest, Retention, SECRET_TABLES, Value};
use guard_core::store::{Job, JobOutcome, SERVE_LEASE_PREFIX};
use guard_store::backup::{Loader, Snapshot};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::migrate_cmd::store_failure;
use crate::progress::Progress;
use crate::{Failure, load_config, logging};

#[derive(Debug, Subcommand)]
pub(crate) enum BackupAction {
    /// Take a consistent backup while guard keeps serving.
    Create(CreateArgs),
    /// List the backups in the backup directory, newest first.
    List {
        /// Directory (default BACKUP_DIR).
        dir: Option<PathBuf>,
    },
    /// Check a backup: its checksums, then every row decoded and counted.
    Verify(PickArgs),
    /// Delete backups beyond the retention (BACKUP_KEEP_DAILY/WEEKLY/MONTHLY).
    Prune {
        /// Directory (default BACKUP_DIR).
        dir: Option<PathBuf>,
        /// Show what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Directory to write into (default BACKUP_DIR).
    dir: Option<PathBuf>,
    /// File name without extension (default guard-<UTC time>).
    #[arg(long)]
    name: Option<String>,
    /// Also back up the token signing keys (they stay encrypted under the master key).
    #[arg(long)]
    include_secrets: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PickArgs {
    /// The backup file.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    file: Option<PathBuf>,
    /// The newest backup in BACKUP_DIR.
    #[arg(long)]
    latest: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pick: PickArgs,
    /// Replace the database without asking.
    #[arg(long)]
    yes: bool,
    /// Do not back up the database being replaced (when it cannot be read, say).
    #[arg(long)]
    no_safety_backup: bool,
    /// Restore even though a `guard serve` holds its lease on the database (each
    /// running server does; one that died holds it at most 30 s).
    #[arg(long)]
    force: bool,
}

pub(crate) async fn run(file: Option<PathBuf>, action: BackupAction) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let config = loaded.config;
    match action {
        BackupAction::Create(args) => {
            let dir = args.dir.unwrap_or_else(|| config.backup.dir.clone());
            let created = create(&config, &dir, args.name, args.include_secrets).await;
            // A mistyped option is the operator's slip, not a failed backup.
            if !matches!(created, Err(Failure::Config(_))) {
                let outcome = if created.is_ok() { JobOutcome::Ok } else { JobOutcome::Failed };
                crate::ops_cmd::record_job_in(&config.database, Job::Backup, outcome).await;
            }
            created.map(|_| ())
        }
        BackupAction::List { dir } => list(&dir.unwrap_or_else(|| config.backup.dir.clone())),
        BackupAction::Verify(pick) => verify(&pick_file(&config, &pick)?),
        BackupAction::Prune { dir, dry_run } => {
            prune(&config, &dir.unwrap_or_else(|| config.backup.dir.clone()), dry_run)
        }
    }
}

fn runtime(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(e.to_string())
}

/// Name prefixes of the backups guard takes before it replaces or migrates a
/// database. `--latest` passes over them: after a restore, the newest backup is the
/// safety copy of what was just replaced.
pub(crate) const SAFETY_PREFIXES: [&str; 2] = ["pre-restore-", "pre-migrate-"];

/// The backup a command names: the file given, or the newest regular backup in
/// BACKUP_DIR.
fn pick_file(config: &Config, pick: &PickArgs) -> Result<PathBuf, Failure> {
    match &pick.file {
        Some(file) => Ok(file.clone()),
        None => {
            let found = scan(&config.backup.dir)?;
            found
                .into_iter()
                .find_map(|(path, manifest)| {
                    let manifest = manifest.ok()?;
                    (!SAFETY_PREFIXES.iter().any(|p| manifest.name.starts_with(p))).then_some(path)
                })
                .ok_or_else(|| Failure::Runtime(format!("no readable backup in {}", config.backup.dir.display())))
        }
    }
}

/// Every `*.guardbak` in `dir` with its manifest (or why it cannot be read), newest
/// first.
/// A backup file and its manifest, or why it cannot be read.
type Found = (PathBuf, Result<Manifest, String>);

fn scan(dir: &Path) -> Result<Vec<Found>, Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::Runtime(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut found: Vec<Found> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == EXTENSION))
        .map(|p| {
            let manifest = guard_core::backup::read_manifest(&p).map_err(|e| e.to_string());
            (p, manifest)
        })
        .collect();
    let key = |m: &Result<Manifest, String>| {
        m.as_ref().ok().and_then(|m| OffsetDateTime::parse(&m.created_at, &Rfc3339).ok())
    };
    found.sort_by(|a, b| key(&b.1).cmp(&key(&a.1)).then_with(|| b.0.cmp(&a.0)));
    Ok(found)
}

/// A finished backup.
pub(crate) struct Created {
    pub path: PathBuf,
}

/// Takes a backup of the configured database into `dir`.
pub(crate) async fn create(
    config: &Config,
    dir: &Path,
    name: Option<String>,
    include_secrets: bool,
) -> Result<Created, Failure> {
    let started = Instant::now();
    let now = OffsetDateTime::now_utc();
    let name = match name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            return Err(Failure::Config(format!(
                "--name {n:?}: expected letters, digits, '-', '_' and '.', not starting with '.'"
            )));
        }
        None => default_name(now, "guard"),
    };
    // Backups hold password hashes: only the owner reads them.
    {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| runtime(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let path = dir.join(format!("{name}.{EXTENSION}"));
    if path.exists() {
        return Err(Failure::Runtime(format!("{} already exists", path.display())));
    }
    // Not removed if present: it may be another run's backup being written.
    let partial = dir.join(format!("{name}.{EXTENSION}.partial"));
    if partial.exists() {
        return Err(Failure::Runtime(format!(
            "{} exists: another backup of this name is being written, or an interrupted one was left (delete it)",
            partial.display()
        )));
    }

    let database = &config.database;
    let mut snapshot = Snapshot::begin(database).await.map_err(|e| store_failure(&e, database))?;
    let schema_version = snapshot.schema_version().await.map_err(|e| store_failure(&e, database))?;
    if schema_version == 0 {
        return Err(Failure::Runtime("the database has no schema: nothing to back up".into()));
    }
    let all = snapshot.tables().await.map_err(|e| store_failure(&e, database))?;
    let (tables, excluded): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|t| include_secrets || !SECRET_TABLES.contains(&t.name.as_str()));
    let mut totals = Vec::new();
    for table in &tables {
        totals.push(snapshot.count(table).await.map_err(|e| store_failure(&e, database))?);
    }
    let manifest = Manifest {
        format_version: guard_core::backup::FORMAT_VERSION,
        name: name.clone(),
        created_at: now.format(&Rfc3339).map_err(runtime)?,
        guard_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version,
        source_backend: snapshot.backend().as_str().to_owned(),
        includes_secrets: include_secrets,
        excluded_tables: excluded.iter().map(|t| t.name.clone()).collect(),
        tables: Vec::new(),
    };

    // Rows are read here and compressed on a thread of their own.
    type Job = (String, Vec<String>, u64, tokio::sync::mpsc::Receiver<guard_store::backup::Chunk>);
    let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
    let writer_path = partial.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<Manifest> {
        let mut archive = ArchiveWriter::create(&writer_path)?;
        let mut progress = Progress::new("backup");
        for (table, columns, total, mut chunks) in job_rx {
            let mut out = archive.table(&table, columns)?;
            let mut done = 0;
            while let Some((bytes, rows)) = chunks.blocking_recv() {
                out.write_rows(&bytes, rows)?;
                done += rows;
                progress.update(&table, done, total);
            }
            out.finish()?;
            progress.finish(&table, done);
        }
        archive.finish(manifest)
    });
    let mut exported = Ok(());
    for (table, total) in tables.iter().zip(&totals) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        if jobs.send((table.name.clone(), table.columns.clone(), *total, rx)).is_err() {
            break;
        }
        if let Err(e) = snapshot.export(table, &tx).await {
            exported = Err(e);
            break;
        }
    }
    drop(jobs);
    let written = writer.await.map_err(runtime)?;
    let closed = snapshot.close().await;
    // The writer's error first: when it stops (a full disk), the reader only sees that.
    let manifest = match (exported, written, closed) {
        (Ok(()), Ok(manifest), Ok(())) => manifest,
        (_, Err(e), _) => {
            let _ = std::fs::remove_file(&partial);
            return Err(Failure::Runtime(format!("cannot write {}: {e}", partial.display())));
        }
        (Err(e), _, _) | (_, _, Err(e)) => {
            let _ = std::fs::remove_file(&partial);
            return Err(store_failure(&e, database));
        }
    };
    if path.exists() {
        let _ = std::fs::remove_file(&partial);
        return Err(Failure::Runtime(format!("{} already exists", path.display())));
    }
    std::fs::rename(&partial, &path).map_err(|e| runtime(format!("cannot move the backup in place: {e}")))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    say!(
        "backup {} written: {} tables, {} rows, {}, schema version {}, {} backend{}, in {:.1}s",
        path.display(),
        manifest.tables.len(),
        manifest.rows(),
        human_size(size),
        manifest.schema_version,
        manifest.source_backend,
        if include_secrets { ", signing keys included (encrypted)" } else { "" },
        started.elapsed().as_secs_f64()
    );
    Ok(Created { path })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(crate) fn default_name(at: OffsetDateTime, prefix: &str) -> String {
    format!(
        "{prefix}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn list(dir: &Path) -> Result<(), Failure> {
    let found = scan(dir)?;
    if found.is_empty() {
        say!("no backups in {}", dir.display());
        return Ok(());
    }
    say!(
        "{:<40}  {:<20}  {:>6}  {:<8}  {:>12}  {:>10}  SECRETS",
        "FILE",
        "CREATED",
        "SCHEMA",
        "BACKEND",
        "ROWS",
        "SIZE"
    );
    for (path, manifest) in found {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match manifest {
            Ok(m) => say!(
                "{:<40}  {:<20}  {:>6}  {:<8}  {:>12}  {:>10}  {}",
                file,
                m.created_at.chars().take(19).collect::<String>(),
                m.schema_version,
                m.source_backend,
                m.rows(),
                human_size(size),
                if m.includes_secrets { "yes" } else { "no" }
            ),
            Err(e) => say!("{file:<40}  UNREADABLE: {e}"),
        }
    }
    Ok(())
}

fn verify(path: &Path) -> Result<(), Failure> {
    let started = Instant::now();
    let bad = |e: std::io::Error| Failure::Runtime(format!("{}: FAILED: {e}", path.display()));
    let reader = ArchiveReader::open(path).map_err(bad)?;
    reader.verify_checksums().map_err(bad)?;
    let mut progress = Progress::new("verify");
    let counts = reader
        .verify_rows(|entry, n| {
            if n == entry.rows {
                progress.finish(&entry.name, n);
            } else {
                progress.update(&entry.name, n, entry.rows);
            }
        })
        .map_err(bad)?;
    let m = &reader.manifest;
    say!(
        "{}: OK: {} tables, {} rows, checksums match, every row read ({}, schema version {}, {} backend, taken {}) in {:.1}s",
        path.display(),
        counts.len(),
        m.rows(),
        m.name,
        m.schema_version,
        m.source_backend,
        m.created_at,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn prune(config: &Config, dir: &Path, dry_run: bool) -> Result<(), Failure> {
    let found = scan(dir)?;
    // Safety backups (taken before a restore or a migration) stay out of the day, week
    // and month buckets, where a copy of a broken database taken at noon would push
    // out that day's good backup; they are kept for BACKUP_KEEP_DAILY days.
    let mut readable: Vec<(PathBuf, OffsetDateTime)> = Vec::new();
    let mut safety: Vec<(PathBuf, OffsetDateTime)> = Vec::new();
    for (path, m) in &found {
        let Ok(m) = m else { continue };
        let Ok(at) = OffsetDateTime::parse(&m.created_at, &Rfc3339) else { continue };
        if SAFETY_PREFIXES.iter().any(|p| m.name.starts_with(p)) {
            safety.push((path.clone(), at));
        } else {
            readable.push((path.clone(), at));
        }
    }
    for (path, m) in &found {
        if let Err(e) = m {
            say!("left alone (unreadable: {e}): {}", path.display());
        }
    }
    let retention = Retention {
        daily: config.backup.keep_daily,
        weekly: config.backup.keep_weekly,
        monthly: config.backup.keep_monthly,
    };
    let times: Vec<OffsetDateTime> = readable.iter().map(|(_, t)| *t).collect();
    let kept = guard_core::backup::select_kept(&times, retention);
    let mut deleted = 0;
    let safety_cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(retention.daily.max(1)));
    for (path, at) in &safety {
        if *at >= safety_cutoff {
            say!("keep    {} (safety backup, kept {} days)", path.display(), retention.daily.max(1));
        } else {
            discard(path, dry_run)?;
            deleted += 1;
        }
    }
    let kept_safety = safety.iter().filter(|(_, at)| *at >= safety_cutoff).count();
    for (i, (path, _)) in readable.iter().enumerate() {
        if kept.contains(&i) {
            say!("keep    {}", path.display());
        } else {
            discard(path, dry_run)?;
            deleted += 1;
        }
    }
    say!(
        "{} kept, {} {} (keep {} daily, {} weekly, {} monthly)",
        kept.len() + kept_safety,
        deleted,
        if dry_run { "would be deleted" } else { "deleted" },
        retention.daily,
        retention.weekly,
        retention.monthly
    );
    Ok(())
}

/// Deletes a pruned backup, or says it would.
fn discard(path: &Path, dry_run: bool) -> Result<(), Failure> {
    if dry_run {
        say!("would delete {}", path.display());
    } else {
        std::fs::remove_file(path).map_err(|e| runtime(format!("cannot delete {}: {e}", path.display())))?;
        say!("deleted {}", path.display());
    }
    Ok(())
}

/// `guard restore`.
pub(crate) async fn restore(file: Option<PathBuf>, args: RestoreArgs) -> Result<(), Failure> {
    let loaded = load_config(file, |l| l)?;
    let _log = logging::init(&loaded.config.log, false)?;
    let config = loaded.config;
    let started = Instant::now();
    let path = pick_file(&config, &args.pick)?;
    let bad = |e: std::io::Error| Failure::Runtime(format!("{}: {e}", path.display()));
    let reader = ArchiveReader::open(&path).map_err(bad)?;
    let manifest = reader.manifest.clone();
    let known = guard_store::embedded_migrations(backend_of(&config)).last().map_or(0, |m| m.version);
    if manifest.schema_version > known {
        return Err(Failure::Runtime(format!(
            "{} is from schema version {}, newer than this guard knows ({known}): restore it with a newer guard",
            path.display(),
            manifest.schema_version
        )));
    }
    reader.verify_checksums().map_err(bad)?;
    let target = config.database.url.redacted();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Config(format!("restoring replaces everything in {target}; pass --yes to confirm")));
        }
        eprint!("Replace everything in {target} with {} ({} rows)? Type yes: ", path.display(), manifest.rows());
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err(Failure::Runtime("not restored".into()));
        }
    }
    if !args.force {
        refuse_if_served(&config).await?;
    }
    // What is replaced is kept first.
    let database = &config.database;
    let current = if args.no_safety_backup { 0 } else { replaced_schema_version(&config).await? };
    if current > 0 {
        let name = default_name(OffsetDateTime::now_utc(), "pre-restore");
        let safety = create(&config, &config.backup.dir, Some(name), true).await?;
        say!("safety backup of the replaced database: {}", safety.path.display());
    }

    let mut loader = Loader::begin(database, manifest.schema_version).await.map_err(|e| store_failure(&e, database))?;
    let order: Vec<String> = loader.tables().iter().map(|t| t.name.clone()).collect();
    for entry in &manifest.tables {
        if !order.contains(&entry.name) {
            return Err(Failure::Runtime(format!(
                "table {} of the backup is not in schema version {}",
                entry.name, manifest.schema_version
            )));
        }
    }
    let reader = std::sync::Arc::new(reader);
    let mut progress = Progress::new("restore");
    for name in &order {
        let Some(entry) = manifest.table(name).cloned() else { continue };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Vec<Value>>>(4);
        let source = reader.clone();
        let decode_entry = entry.clone();
        let decoder = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut rows = source.rows(&decode_entry)?;
            let mut batch = Vec::with_capacity(2000);
            let mut row = Vec::new();
            let mut n = 0;
            while rows.next_row(&mut row)? {
                batch.push(std::mem::take(&mut row));
                n += 1;
                if batch.len() == 2000
                    && tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(2000))).is_err()
                {
                    return Ok(n);
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            Ok(n)
        });
        // Progress comes from the loader's side: rows are counted as they arrive.
        let (count_tx, counted) = tokio::sync::mpsc::channel::<Vec<Vec<Value>>>(4);
        let total = entry.rows;
        let table_name = name.clone();
        let forward = async {
            let mut done = 0u64;
            while let Some(batch) = rx.recv().await {
                done += batch.len() as u64;
                progress.update(&table_name, done, total);
                if count_tx.send(batch).await.is_err() {
                    break;
                }
            }
            drop(count_tx);
        };
        let (_, loaded) = tokio::join!(forward, loader.load(name, &entry.columns, counted));
        // Nothing is replaced before the commit below.
        let loaded = loaded.map_err(|e| {
            Failure::Runtime(format!(
                "table {name}: {}; the database is unchanged",
                store_failure(&e, database).message()
            ))
        })?;
        let decoded = decoder.await.map_err(runtime)?.map_err(bad)?;
        if loaded != entry.rows || decoded != entry.rows {
            return Err(Failure::Runtime(format!(
                "table {name}: {loaded} rows loaded, the backup lists {}; the database is unchanged",
                entry.rows
            )));
        }
        progress.finish(name, loaded);
    }
    loader.commit().await.map_err(|e| store_failure(&e, database))?;
    // Bring an older backup up to this guard's schema.
    let db = guard_store::open(database).await.map_err(|e| store_failure(&e, database))?;
    let applied = db.migrations.up().await.map_err(|e| store_failure(&e, database))?;
    // Leases of servers that used the backed-up database came with its rows: no process
    // holds them here.
    if let Ok(carried) = db.ops.leases(SERVE_LEASE_PREFIX).await {
        for lease in carried {
            let _ = db.audit.release_lease(&lease.name, &lease.holder).await;
        }
    }
    db.pool.close().await;
    say!(
        "restored {} into {target}: {} tables, {} rows, schema version {}{}, in {:.1}s",
        path.display(),
        manifest.tables.len(),
        manifest.rows(),
        manifest.schema_version,
        if applied.is_empty() { String::new() } else { format!(", then migrated to {known}") },
        started.elapsed().as_secs_f64()
    );
    if !manifest.includes_secrets {
        say!("the backup holds no signing keys: guard creates new ones, and tokens signed before no longer verify");
    }
    Ok(())
}

/// The migration that creates `job_leases`: an older schema holds no lease.
const JOB_LEASES_VERSION: i64 = 2;

/// Refuses (exit 1) when a `guard serve` process holds an unexpired lease on the
/// database a restore would replace. Nothing to replace, or a schema without leases,
/// passes; a database that cannot be read stops the restore, naming --force.
async fn refuse_if_served(config: &Config) -> Result<(), Failure> {
    let database = &config.database;
    if sqlite_file(database.url.expose()).is_some_and(|path| !path.exists()) {
        return Ok(());
    }
    let read = async {
        let db = guard_store::open(database).await?;
        let found = async {
            if db.migrations.status().await?.latest_applied < JOB_LEASES_VERSION {
                return Ok(Vec::new());
            }
            db.ops.leases(SERVE_LEASE_PREFIX).await
        }
        .await;
        db.pool.close().await;
        found
    };
    let leases = read.await.map_err(|e| {
        Failure::Runtime(format!(
            "cannot read the database being replaced to check that no guard serve uses it ({}); \
             --force restores without checking",
            store_failure(&e, database).message()
        ))
    })?;
    // Compared here, not in SQL: SQLite keeps the times as text.
    let now = OffsetDateTime::now_utc();
    let live: Vec<_> = leases.into_iter().filter(|l| l.expires_at > now).collect();
    let Some(until) = live.iter().map(|l| l.expires_at).max() else { return Ok(()) };
    let until = until.to_offset(time::UtcOffset::UTC);
    let until = until.replace_nanosecond(0).unwrap_or(until).format(&Rfc3339).map_err(runtime)?;
    let ttl = crate::serve_cmd::SERVE_LEASE_TTL.as_secs();
    let (n, target) = (live.len(), database.url.redacted());
    let uses = if n == 1 {
        format!("1 guard serve process uses {target} (its lease runs until {until})")
    } else {
        format!("{n} guard serve processes use {target} (their leases run until {until})")
    };
    Err(Failure::Runtime(format!(
        "not restored: {uses}; stop every guard serve using this database first; \
         a process that died holds its lease at most {ttl} s; --force restores anyway"
    )))
}

/// The schema version of the database a restore replaces (0: nothing to keep). An
/// error stops the restore: what cannot be read cannot be kept.
async fn replaced_schema_version(config: &Config) -> Result<i64, Failure> {
    let database = &config.database;
    if database.kind() == guard_core::config::DatabaseKind::Sqlite
        && let Some(path) = sqlite_file(database.url.expose())
        && !path.exists()
    {
        return Ok(0);
    }
    let read = async {
        let mut snapshot = Snapshot::begin(database).await?;
        let version = snapshot.schema_version().await;
        let _ = snapshot.close().await;
        version
    };
    read.await.map_err(|e| {
        Failure::Runtime(format!(
            "cannot read the database being replaced to keep a safety backup ({}); \
             pass --no-safety-backup to restore without one",
            store_failure(&e, database).message()
        ))
    })
}

/// The file of a SQLite URL, as the driver reads it (percent-decoded).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    guard_store::backup::sqlite_path(url)
}

fn backend_of(config: &Config) -> guard_core::store::Backend {
    match config.database.kind() {
        guard_core::config::DatabaseKind::Sqlite => guard_core::store::Backend::Sqlite,
        guard_core::config::DatabaseKind::Postgres => guard_core::store::Backend::Postgres,
    }
}
