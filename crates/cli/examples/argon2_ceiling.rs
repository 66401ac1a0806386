//! Prints the time of one password hash with guard's default Argon2id parameters and
//! the resulting ceiling (cores ÷ time), for the login benchmark to compare against.

use std::time::Instant;

use guard_core::passwords::{HashParams, PasswordHasher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params = HashParams { memory_kib: 19456, iterations: 2, parallelism: 1 };
    let hasher = PasswordHasher::per_cpu(params)?;
    let hash = hasher.hash("correct horse battery staple".into()).await?;
    let rounds = 40;
    let started = Instant::now();
    for _ in 0..rounds {
        hasher.verify("correct horse battery staple".into(), hash.clone()).await?;
    }
    let one = started.elapsed().as_secs_f64() / f64::from(rounds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "argon2id m=19456 t=2 p=1: {:.1} ms per verification; ceiling {:.1} logins/s on {cores} cores",
        one * 1000.0,
        cores as f64 / one
    );
    Ok(())
}
