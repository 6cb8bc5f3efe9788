//! Wall-clock timing in a page, where the clock is coarse (tens of microseconds at best): repeat
//! until both `reps` runs and a minimum duration have passed, and report the mean per run.

use std::future::Future;

use web_time::Instant;

/// Runs taking less than this in all are repeated further.
const MIN_TOTAL_MS: f64 = 20.0;
const MAX_RUNS: usize = 10_000;

/// Mean microseconds per run of `f`, and how many runs that took.
pub async fn time_runs<F, Fut, E>(reps: usize, mut f: F) -> Result<(f64, usize), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let start = Instant::now();
    let mut runs = 0;
    while runs < reps.max(1) || (start.elapsed().as_secs_f64() * 1e3 < MIN_TOTAL_MS && runs < MAX_RUNS) {
        f().await?;
        runs += 1;
    }
    Ok((start.elapsed().as_secs_f64() * 1e6 / runs as f64, runs))
}
