//! A profiling run killed with SIGKILL mid-way and started again ends with exactly the rows a clean run has: nothing
//! lost, nothing counted twice. Runs the real `switchyard profile` binary against the simulator, on SQLite and on
//! Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::Row;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;
use switchyard_core::store::testing;
use switchyard_sim::SimOptions;
use tokio::process::Command;

const ITEMS: &str = "8";

fn profile_command(sim_url: &str, db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["profile", "--items-per-category", ITEMS])
        .env("SWITCHYARD_OLLAMA_URL", sim_url)
        .env("SWITCHYARD_VRAM_PROBE", "sim")
        .env("SWITCHYARD_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

async fn count(url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    // The file may not exist yet at the first polls.
    let Ok(pool) = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await else { return 0 };
    let n = match sqlx::query("SELECT COUNT(*) FROM profile_results").fetch_one(&pool).await {
        Ok(row) => row.try_get::<i64, _>(0).unwrap_or(0),
        Err(_) => 0,
    };
    pool.close().await;
    n
}

/// Everything that must be identical between a resumed and a clean run (timings differ, of course).
async fn rows(url: &str) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let pool = pool(url).await;
    let results =
        sqlx::query("SELECT model, digest, category, item_id, suite_version, correct, run_id FROM profile_results")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {} {}",
                    r.get::<String, _>(0),
                    r.get::<String, _>(1),
                    r.get::<String, _>(2),
                    r.get::<String, _>(3),
                    r.get::<String, _>(4),
                    r.get::<i64, _>(5)
                )
            })
            .collect();
    let scores = sqlx::query("SELECT model, category, n, successes FROM profile_scores")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!("{} {} {} {}", r.get::<String, _>(0), r.get::<String, _>(1), r.get::<i64, _>(2), r.get::<i64, _>(3))
        })
        .collect();
    let runs = sqlx::query("SELECT model, status FROM profile_runs")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
    pool.close().await;
    (results, scores, runs)
}

async fn kill_and_resume(engine: &str, killed_url: &str, clean_url: &str) {
    // A small time scale makes the run last long enough to be killed in the middle.
    let sim = switchyard_sim::spawn(SimOptions { time_scale: 0.002, ..SimOptions::default() }).await.unwrap();

    let mut child = profile_command(&sim.url(), killed_url).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if count(killed_url).await >= 40 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{engine}: the profile run made no progress");
        assert!(child.try_wait().unwrap().is_none(), "{engine}: the run finished before it could be killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at_kill = count(killed_url).await;

    let status = profile_command(&sim.url(), killed_url).status().await.unwrap();
    assert!(status.success(), "{engine}: the resumed run failed");
    let status = profile_command(&sim.url(), clean_url).status().await.unwrap();
    assert!(status.success(), "{engine}: the clean run failed");

    let (resumed_results, resumed_scores, resumed_runs) = rows(killed_url).await;
    let (clean_results, clean_scores, clean_runs) = rows(clean_url).await;
    println!(
        "{engine}: killed with {at_kill} of {} results stored; resumed run has {} results",
        clean_results.len(),
        resumed_results.len()
    );
    assert!((at_kill as usize) < clean_results.len(), "{engine}: killed too late to test anything");
    assert_eq!(resumed_results, clean_results, "{engine}: results differ");
    assert_eq!(resumed_scores, clean_scores, "{engine}: scores differ");
    assert_eq!(resumed_runs, clean_runs, "{engine}: runs differ (the killed run must be resumed, not duplicated)");
    assert!(clean_runs.iter().all(|r| r.ends_with(" complete")), "{clean_runs:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn sigkill_mid_run_then_restart_equals_a_clean_run_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let killed = format!("sqlite://{}", dir.path().join("killed.db").display());
    let clean = format!("sqlite://{}", dir.path().join("clean.db").display());
    kill_and_resume("sqlite", &killed, &clean).await;
}

#[tokio::test]
async fn sigkill_mid_run_then_restart_equals_a_clean_run_on_postgres() {
    let (Some(killed), Some(clean)) = (testing::postgres_url().await.unwrap(), testing::postgres_url().await.unwrap())
    else {
        return;
    };
    kill_and_resume("postgres", &killed, &clean).await;
}
